"""Outputs do not carry what the input said about where, when and with what it was made.

Photos lose their EXIF (GPS position, camera serial number), XMP and comments; videos and audio
lose their container and stream tags (title, location, comments), whether the stream is re-encoded
or copied. Every check looks for the secret in the output's bytes, whatever the container calls it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import av
import pytest
from PIL import Image

from apps.operations.enums import OperationStatus
from tests.hostile import attacks

pytestmark = pytest.mark.django_db

SECRET = f"konvrt-secret-{secrets.token_hex(6)}"


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "IMG_0042.jpg"
    path.write_bytes(attacks.jpeg_with_gps_and_comment(comment=SECRET.encode(), latitude=(48, 51, 24)))
    with Image.open(path) as image:  # the input really carries them
        assert image.getexif().get_ifd(attacks.GPS_IFD)[2] == (48.0, 51.0, 24.0)
        assert image.info["comment"] == SECRET.encode()
    return path


@pytest.mark.parametrize(
    ("operation", "parameters", "pillow_format"),
    [
        ("image_resize", {"width": 32}, "JPEG"),
        ("image_convert", {"output_format": "jpg"}, "JPEG"),
        ("image_convert", {"output_format": "png"}, "PNG"),
        ("image_convert", {"output_format": "webp"}, "WEBP"),
    ],
)
def test_photos_lose_gps_serial_numbers_and_comments(
    photo, run_operation, output_path, operation, parameters, pillow_format
):
    done = run_operation(operation, photo, parameters)

    assert done.status == OperationStatus.COMPLETED, done.error_message
    result = output_path(done)
    content = result.read_bytes()
    assert SECRET.encode() not in content
    assert b"SERIAL-0042-SECRET" not in content and b"KonvrtCam" not in content
    with Image.open(result, formats=[pillow_format]) as image:
        assert not image.getexif()
        assert "comment" not in image.info and "exif" not in image.info and "xmp" not in image.info


def test_stripping_private_data_keeps_a_palette_images_transparency(tmp_path, run_operation, output_path):
    source = tmp_path / "icon.png"
    icon = Image.new("P", (8, 8), 0)
    icon.putpalette([0, 0, 0, 255, 255, 255])
    icon.save(source, "PNG", transparency=0)

    done = run_operation("image_convert", source, {"output_format": "png"})

    with Image.open(output_path(done), formats=["PNG"]) as result:
        assert result.has_transparency_data
        assert result.convert("RGBA").getpixel((0, 0))[3] == 0


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, media) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tagged")
    tags = {"title": SECRET, "comment": SECRET, "location": "+48.8577+002.2950/", "artist": SECRET}
    return {
        name: attacks.with_tags(source=source, output=directory / f"tagged.{name}", tags=tags)
        for name, source in {
            "mp4": media.video(duration=0.5),
            "mkv": media.video(extension="mkv", duration=0.5),
            "mp3": media.audio(extension="mp3", duration=0.5),
            "flac": media.audio(extension="flac", duration=0.5),
        }.items()
    }


@pytest.mark.parametrize(
    ("source", "operation", "parameters"),
    [
        ("mp4", "video_compress", {"preset": "ultrafast"}),
        ("mkv", "video_convert", {"output_format": "webm"}),
        ("mp4", "video_convert", {"output_format": "mov"}),  # the AAC audio is stream-copied
        ("mp4", "audio_extract", {"output_format": "mp3"}),
        ("mp3", "audio_convert", {"output_format": "mp3", "bitrate": "320k"}),  # stream-copied
        ("mp3", "audio_convert", {"output_format": "ogg"}),
        ("flac", "audio_convert", {"output_format": "flac"}),  # stream-copied
        ("flac", "audio_convert", {"output_format": "wav"}),
    ],
)
def test_video_and_audio_lose_their_tags(tagged, run_operation, output_path, source, operation, parameters):
    path = tagged[source]
    with av.open(str(path)) as container:  # the input really carries them
        assert container.metadata.get("title") == SECRET

    done = run_operation(operation, path, parameters)

    assert done.status == OperationStatus.COMPLETED, done.error_message
    result = output_path(done)
    assert SECRET.encode() not in result.read_bytes()
    assert b"+48.8577" not in result.read_bytes()
    with av.open(str(result)) as container:
        assert not {"title", "comment", "artist", "location"} & set(container.metadata)
        for stream in container.streams:
            assert not {"title", "comment", "artist", "location"} & set(stream.metadata)
