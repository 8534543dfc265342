"""Upload content sniffing: real files of every accepted format, and files that lie about what they are."""

from __future__ import annotations

import pytest

from apps.core.exceptions import UnsupportedMedia
from apps.operations.enums import MediaType
from apps.processors.registry import OPERATIONS
from apps.processors.utils.validation import inspect_upload, sniff_formats


@pytest.mark.parametrize(
    ("extension", "container"),
    [
        ("mp4", "mov"),
        ("mov", "mov"),
        ("avi", "avi"),
        ("mkv", "matroska"),
        ("webm", "matroska"),
        ("wmv", "asf"),
        ("flv", "flv"),
    ],
)
def test_every_accepted_video_format_is_recognised_and_probed(media, extension, container):
    path = media.video(extension=extension, duration=0.5)

    inspection = inspect_upload(path=path, definition=OPERATIONS["video_compress"])

    assert inspection.media_type == MediaType.VIDEO
    assert inspection.extension == extension
    assert inspection.container == container
    assert inspection.metadata["width"] == 320
    assert inspection.metadata["duration"] == pytest.approx(0.5, abs=0.15)


@pytest.mark.parametrize(
    ("extension", "container", "mime_type"),
    [
        ("mp3", "mp3", "audio/mpeg"),
        ("wav", "wav", "audio/wav"),
        ("aac", "aac", "audio/aac"),
        ("m4a", "mov", "audio/mp4"),
        ("ogg", "ogg", "audio/ogg"),
        ("flac", "flac", "audio/flac"),
        ("opus", "ogg", "audio/opus"),
    ],
)
def test_every_accepted_audio_format_is_recognised_and_probed(media, extension, container, mime_type):
    path = media.audio(extension=extension, duration=0.5)

    inspection = inspect_upload(path=path, definition=OPERATIONS["audio_convert"])

    assert (inspection.extension, inspection.container, inspection.mime_type) == (extension, container, mime_type)
    assert inspection.metadata["sample_rate"] in (44100, 48000)


def test_mp3_with_cover_art_is_still_audio(media):
    inspection = inspect_upload(
        path=media.audio(extension="mp3", cover_art=True), definition=OPERATIONS["audio_convert"]
    )
    assert inspection.extension == "mp3"


@pytest.mark.parametrize(
    ("make", "extension", "pillow_format"),
    [
        (lambda m: m.jpeg(), "jpg", "JPEG"),
        (lambda m: m.png(), "png", "PNG"),
        (lambda m: m.gif(), "gif", "GIF"),
        (lambda m: m.webp(), "webp", "WEBP"),
        (lambda m: m.bmp(), "bmp", "BMP"),
    ],
)
def test_every_accepted_image_format_is_recognised_and_probed(media, make, extension, pillow_format):
    inspection = inspect_upload(path=make(media), definition=OPERATIONS["image_resize"])

    assert (inspection.extension, inspection.container) == (extension, pillow_format)
    assert inspection.metadata["width"] > 0


def test_audio_extract_takes_a_video(media):
    inspection = inspect_upload(path=media.video(duration=0.5), definition=OPERATIONS["audio_extract"])
    assert inspection.media_type == MediaType.VIDEO


def test_a_png_is_not_a_video_whatever_its_name(media, tmp_path):
    disguised = tmp_path / "holiday.mp4"
    disguised.write_bytes(media.png().read_bytes())

    with pytest.raises(UnsupportedMedia, match="PNG image, but video_compress needs a video"):
        inspect_upload(path=disguised, definition=OPERATIONS["video_compress"])


def test_text_is_not_media(media):
    with pytest.raises(UnsupportedMedia, match="not a video Konvrt can read"):
        inspect_upload(path=media.text(extension="mp4"), definition=OPERATIONS["video_compress"])


def test_a_video_is_refused_by_an_audio_operation_even_in_an_audio_container(media, tmp_path):
    renamed = tmp_path / "song.m4a"
    renamed.write_bytes(media.video(duration=0.5).read_bytes())

    with pytest.raises(UnsupportedMedia, match="use audio_extract"):
        inspect_upload(path=renamed, definition=OPERATIONS["audio_convert"])


def test_an_audio_only_mp4_is_refused_as_a_video(media, tmp_path):
    with pytest.raises(UnsupportedMedia, match="no video stream"):
        inspect_upload(path=media.audio(extension="m4a", duration=0.5), definition=OPERATIONS["video_compress"])


def test_a_truncated_file_with_a_valid_signature_is_refused(media, tmp_path):
    truncated = tmp_path / "broken.mp4"
    truncated.write_bytes(media.video(duration=0.5).read_bytes()[:64])

    with pytest.raises(UnsupportedMedia, match="could not be read"):
        inspect_upload(path=truncated, definition=OPERATIONS["video_compress"])


def test_the_demuxer_is_pinned_to_the_sniffed_format(media, tmp_path):
    # An HLS playlist would make FFmpeg open other files or URLs; it never gets that far.
    playlist = tmp_path / "movie.mp4"
    playlist.write_text("#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/secret.ts\n")

    with pytest.raises(UnsupportedMedia):
        inspect_upload(path=playlist, definition=OPERATIONS["video_compress"])


@pytest.mark.parametrize(
    ("head", "extensions"),
    [
        (b"\x00\x00\x00\x18ftypisom", ["mp4", "m4a"]),
        (b"\x00\x00\x00\x14ftypqt  ", ["mov", "m4a"]),
        (b"\x00\x00\x00\x1cftypM4A ", ["m4a", "mp4"]),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00\xff\xfb\x90", ["mp3"]),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00fLaC", ["flac"]),
        (b"\xff\xf1\x50\x80", ["aac"]),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", ["wav"]),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ["webp"]),
        (b"GIF89a", ["gif"]),
        (b"<html>", []),
        (b"", []),
    ],
)
def test_magic_bytes(head, extensions):
    assert [candidate.extension for candidate in sniff_formats(head)] == extensions
