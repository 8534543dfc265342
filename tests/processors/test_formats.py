"""The formats catalog is the one table of format facts: everything derived from it agrees with it."""

from __future__ import annotations

import pytest

from apps.processors.formats import FORMATS, MediaType, decoders, get_format, mime_type_for_extension
from apps.processors.registry import OPERATIONS, UnknownOperation, get_operation
from apps.processors.sniffing import sniff_formats


@pytest.mark.parametrize(
    ("extension", "mime"),
    [
        ("mp4", "video/mp4"),
        ("mov", "video/quicktime"),
        ("webm", "video/webm"),
        ("jpg", "image/jpeg"),
        ("JPEG", "image/jpeg"),
        ("aac", "audio/aac"),
        ("wav", "audio/wav"),
        ("opus", "audio/opus"),
        ("m4a", "audio/mp4"),
        ("txt", "text/plain"),
        ("qqq", "application/octet-stream"),
    ],
)
def test_mime_types_come_from_the_catalog_then_the_platform(extension, mime):
    assert mime_type_for_extension(extension) == mime


def test_every_format_an_operation_names_is_in_the_catalog_with_its_media_type():
    for definition in OPERATIONS.values():
        for extension in definition.input_formats:
            assert get_format(extension).media_type == definition.media_type, (definition.name, extension)
        for extension in definition.output_formats:
            # GIF is written by FFmpeg's gif muxer in video_to_gif only; Pillow never writes one,
            # so the catalog names no encoder for it (and image_convert does not offer it).
            if (definition.name, extension) == ("video_to_gif", "gif"):
                continue
            assert get_format(extension).encoder, f"{definition.name} writes {extension}, which has no muxer"


def test_audio_outputs_name_their_codec_and_encoder():
    for entry in FORMATS.values():
        if entry.media_type == MediaType.AUDIO and entry.encoder:
            assert entry.audio_codec and entry.audio_encoder, entry.extension


def test_decoders_keep_images_apart_from_audio_and_video():
    assert decoders(MediaType.IMAGE) == {
        "jpg": "JPEG",
        "jpeg": "JPEG",
        "png": "PNG",
        "webp": "WEBP",
        "avif": "AVIF",
        "gif": "GIF",
        "bmp": "BMP",
        "tif": "TIFF",
        "tiff": "TIFF",
        "heic": "HEIF",
        "heif": "HEIF",
    }
    media = decoders(MediaType.VIDEO)
    assert media["mp4"] == "mov" and media["m4a"] == "mov" and media["opus"] == "ogg" and media["wmv"] == "asf"
    assert (media["mpg"], media["ts"], media["3gp"], media["aiff"], media["wma"]) == (
        "mpeg",
        "mpegts",
        "mov",
        "aiff",
        "asf",
    )
    assert "png" not in media


def test_jpeg_is_read_but_written_as_jpg():
    assert "jpeg" in OPERATIONS["image_convert"].input_formats
    assert "jpeg" not in OPERATIONS["image_convert"].output_formats
    assert get_format("jpeg").alias_of == "jpg"


def test_aliases_are_read_and_never_written_under_their_own_name():
    for alias, main in (("jpeg", "jpg"), ("tiff", "tif"), ("heif", "heic"), ("oga", "ogg"), ("m4v", "mp4")):
        entry = get_format(alias)
        assert (entry.alias_of, entry.decoder, entry.writable) == (main, get_format(main).decoder, False)
        for definition in OPERATIONS.values():
            assert alias not in definition.output_formats


def test_image_convert_writes_avif_but_not_gif():
    assert OPERATIONS["image_convert"].output_formats == ("jpg", "png", "webp", "avif")
    assert "gif" in OPERATIONS["image_resize"].output_formats


def test_what_the_sniffer_recognises_is_a_catalog_entry():
    heads = [b"\x00\x00\x00\x18ftypisom", b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, b"fLaC\x00\x00\x00\x22"]
    for head in heads:
        for sniffed in sniff_formats(head):
            assert FORMATS[sniffed.extension] is sniffed


def test_an_unknown_operation_name_raises_for_internal_callers():
    with pytest.raises(UnknownOperation):
        get_operation("video_stabilize")
    assert OPERATIONS.get("video_stabilize") is None
