"""The real-media fetcher: pinned content is checked, and an unreachable registry skips, never fails."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from tests.realmedia.sources import RealMedia


def manifest(tmp_path, files: dict[str, str]):
    path = tmp_path / "manifest.json"
    source = {"fetch": "pip-sdist", "package": "konvrt-sample", "version": "1.0", "root": "konvrt_sample-1.0"}
    path.write_text(json.dumps({"sources": {"sample": source}, "files": files}))
    return path


def cached_sdist(cache, content: bytes) -> None:
    """An archive as ``pip download`` leaves it, already in the cache: nothing is fetched."""
    folder = cache / "pip-sdist"
    folder.mkdir(parents=True)
    with tarfile.open(folder / "konvrt_sample-1.0.tar.gz", "w:gz") as archive:
        member = tarfile.TarInfo("konvrt_sample-1.0/data/sound.wav")
        member.size = len(content)
        archive.addfile(member, io.BytesIO(content))


def test_a_pinned_file_is_taken_out_of_its_cached_archive(tmp_path):
    content = b"RIFF....WAVE"
    cached_sdist(tmp_path / "cache", content)
    media = RealMedia(
        tmp_path / "cache",
        manifest_path=manifest(tmp_path, {"sample:data/sound.wav": hashlib.sha256(content).hexdigest()}),
    )

    path = media.path("sample:data/sound.wav")

    assert path.read_bytes() == content
    assert path == tmp_path / "cache" / "files" / "sample" / "data" / "sound.wav"


def test_a_file_whose_content_changed_fails_and_is_not_kept(tmp_path):
    cached_sdist(tmp_path / "cache", b"something else")
    media = RealMedia(tmp_path / "cache", manifest_path=manifest(tmp_path, {"sample:data/sound.wav": "0" * 64}))

    with pytest.raises(pytest.fail.Exception, match="is not the pinned file"):
        media.path("sample:data/sound.wav")
    assert not (tmp_path / "cache" / "files" / "sample" / "data" / "sound.wav").exists()


def test_an_unreachable_registry_skips_with_the_reason(tmp_path, monkeypatch):
    # pip reads its index from its own configuration; here it points at a closed local port.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    media = RealMedia(tmp_path / "cache", manifest_path=manifest(tmp_path, {"sample:data/sound.wav": "0" * 64}))

    with pytest.raises(pytest.skip.Exception, match="konvrt-sample 1.0 could not be fetched"):
        media.path("sample:data/sound.wav")
    with pytest.raises(pytest.skip.Exception):  # the next file of the same source does not try again
        media.path("sample:data/sound.wav")


def test_a_path_leaving_its_archive_is_refused(tmp_path):
    media = RealMedia(tmp_path / "cache", manifest_path=manifest(tmp_path, {"sample:../../etc/passwd": "0" * 64}))

    with pytest.raises(ValueError, match="stays inside its archive"):
        media.path("sample:../../etc/passwd")
