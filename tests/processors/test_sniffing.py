"""Upload content sniffing: real files of every accepted format, and files that lie about what they are."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
from PIL import Image

from apps.core.exceptions import UnsupportedMedia, ValidationFailed
from apps.processors import sniffing
from apps.processors.exceptions import ProbeError
from apps.processors.formats import MediaType
from apps.processors.probe import ImageTooLarge
from apps.processors.registry import OPERATIONS
from apps.processors.sniffing import inspect_upload, sniff_formats
from tests.hostile.attacks import gif_animation, png_bomb


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
        ("mpg", "mpeg"),
        ("ts", "mpegts"),
        ("3gp", "mov"),
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
    assert inspection.metadata["format"] == extension


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
        ("aiff", "aiff", "audio/aiff"),
        ("wma", "asf", "audio/x-ms-wma"),
    ],
)
def test_every_accepted_audio_format_is_recognised_and_probed(media, extension, container, mime_type):
    path = media.audio(extension=extension, duration=0.5)

    inspection = inspect_upload(path=path, definition=OPERATIONS["audio_convert"])

    assert (inspection.extension, inspection.container, inspection.mime_type) == (extension, container, mime_type)
    assert inspection.metadata["sample_rate"] in (44100, 48000)
    assert inspection.metadata["format"] == extension


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
        (lambda m: m.tif(), "tif", "TIFF"),
        (lambda m: m.heic(), "heic", "HEIF"),
        (lambda m: m.avif(), "avif", "AVIF"),
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


def test_text_is_not_media_and_the_refusal_lists_the_accepted_formats(media):
    with pytest.raises(UnsupportedMedia) as refusal:
        inspect_upload(path=media.text(extension="mp4"), definition=OPERATIONS["video_compress"])

    accepted = ", ".join(OPERATIONS["video_compress"].input_formats)
    message = f"This file is not a video Konvrt can read (accepted formats: {accepted})."
    assert (refusal.value.message, refusal.value.details) == (message, {"file": [message]})


def test_a_format_of_the_right_kind_that_the_operation_does_not_take_is_refused_by_name(media):
    # An operation the registry may offer later, taking MP3 only.
    mp3_only = dataclasses.replace(OPERATIONS["audio_convert"], name="audio_tag", input_formats=("mp3",))

    with pytest.raises(UnsupportedMedia) as refusal:
        inspect_upload(path=media.audio(extension="wav", duration=0.5), definition=mp3_only)

    message = "audio_tag does not accept a WAV audio file (accepted formats: mp3)."
    assert (refusal.value.message, refusal.value.details) == (message, {"file": [message]})


def test_an_audio_operation_given_sound_with_a_video_track_takes_it_as_audio(media, tmp_path):
    # An M4A carrying an H.264 track beside its AAC: audio_convert works on the sound.
    song = tmp_path / "song.m4a"
    song.write_bytes(media.video(duration=0.5).read_bytes())

    inspection = inspect_upload(path=song, definition=OPERATIONS["audio_convert"])

    assert (inspection.media_type, inspection.extension, inspection.container) == (MediaType.AUDIO, "m4a", "mov")
    assert inspection.metadata["audio_codec"] == "aac"


def test_audio_extract_of_a_video_without_sound_is_refused_at_upload_with_the_registry_sentence(media):
    with pytest.raises(ValidationFailed) as refusal:
        inspect_upload(path=media.video(duration=0.5, audio=False), definition=OPERATIONS["audio_extract"])

    message = "This video has no audio track to extract."
    assert (refusal.value.message, refusal.value.details) == (message, {"file": [message]})
    assert refusal.value.status_code == 400


def test_media_with_the_stream_an_operation_needs_is_not_refused_for_lacking_another(media):
    # A silent video is fine for video_compress, which needs only the picture.
    inspection = inspect_upload(path=media.video(duration=0.5, audio=False), definition=OPERATIONS["video_compress"])
    assert inspection.metadata["video_codec"] == "h264"


def test_aliases_are_stored_under_the_main_extension(media, tmp_path):
    for alias, make, definition, stored in (
        ("oga", lambda: media.audio(extension="oga", duration=0.5), "audio_convert", "ogg"),
        ("m4v", lambda: media.video(extension="m4v", duration=0.5), "video_convert", "mp4"),
        ("tiff", media.tif, "image_convert", "tif"),
        ("heif", media.heic, "image_convert", "heic"),
        ("mpeg", lambda: media.video(extension="mpg", duration=0.5), "video_convert", "mpg"),
    ):
        named = tmp_path / f"upload.{alias}"
        named.write_bytes(make().read_bytes())
        assert alias in OPERATIONS[definition].input_formats
        assert inspect_upload(path=named, definition=OPERATIONS[definition]).extension == stored, alias


def classic_quicktime(modern: bytes) -> bytes:
    """A QuickTime file as cameras wrote them before 2001: no "ftyp" atom, the movie's own atoms
    first. FFmpeg's MOV muxer writes ftyp, wide, mdat, moov; turning the ftyp into a "free" atom
    of the same size gives exactly that layout (a free atom, then wide, mdat, moov)."""
    assert modern[4:8] == b"ftyp"
    return modern[:4] + b"free" + modern[8:]


def test_a_classic_quicktime_movie_without_ftyp_is_read_as_mov(media, tmp_path):
    camera = tmp_path / "MVI_0001.mov"
    camera.write_bytes(classic_quicktime(media.video(extension="mov", duration=0.5).read_bytes()))

    inspection = inspect_upload(path=camera, definition=OPERATIONS["video_convert"])

    assert (inspection.extension, inspection.container, inspection.metadata["width"]) == ("mov", "mov", 320)


def test_an_audio_only_mp4_is_refused_as_a_video(media, tmp_path):
    with pytest.raises(UnsupportedMedia, match="no video stream"):
        inspect_upload(path=media.audio(extension="m4a", duration=0.5), definition=OPERATIONS["video_compress"])


def test_a_truncated_file_with_a_valid_signature_is_refused_and_the_probes_error_logged(media, tmp_path, caplog):
    truncated = tmp_path / "broken.mp4"
    truncated.write_bytes(media.video(duration=0.5).read_bytes()[:64])

    with caplog.at_level(logging.INFO, logger=sniffing.__name__), pytest.raises(UnsupportedMedia) as refusal:
        inspect_upload(path=truncated, definition=OPERATIONS["video_compress"])

    message = "This file looks like an MP4 video but could not be read; it may be damaged."
    assert (refusal.value.message, refusal.value.details) == (message, {"file": [message]})
    probe_error = refusal.value.__cause__
    assert isinstance(probe_error, ProbeError)
    assert f"Upload rejected: looked like mp4 but could not be read: {probe_error}" in caplog.messages


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
        (b"\x00\x00\x00\x08wide\x00\x10\x00\x00mdat", ["mov", "m4a"]),
        (b"\x00\x00\x00\x10moov\x00\x00\x00\x08mvhd", ["mov", "m4a"]),
        (b"\x00\x00\x00\x0cpnot\x00\x00\x00\x00\x00\x00\x00\x14ftypqt  ", ["mov", "m4a"]),
        (b"\x00\x00\x00\x08free\x00\x00\x00\x14ftypisom", ["mp4", "m4a"]),
        (b"\x00\x00\x00\x20ftypM4V \x00\x00\x02\x00M4V M4A mp42isom", ["mp4", "m4a"]),
        (b"\x00\x00\x00\x18ftyp3gp6\x00\x00\x01\x00", ["3gp", "m4a"]),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", ["heic"]),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", ["avif"]),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", ["avif"]),
        (b"\x00\x00\x01\xba\x44\x00\x04\x00", ["mpg"]),
        (b"FORM\x00\x00\x10\x00AIFFCOMM", ["aiff"]),
        (b"FORM\x00\x00\x10\x00AIFCFVER", ["aiff"]),
        (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), ["wmv", "wma"]),
        (b"II*\x00\x08\x00\x00\x00", ["tif"]),
        (b"MM\x00*\x00\x00\x00\x08", ["tif"]),
        ((b"\x47" + b"\x00" * 187) * 3, ["ts"]),
        ((b"\x00\x00\x00\x00\x47" + b"\x00" * 187) * 3, ["ts"]),
        ((b"\x47" + b"\x00" * 187) * 2, []),
        (b"\x00\x00\x00\x08junk\x00\x00\x00\x08mdat", []),
        (b"<html>", []),
        (b"", []),
    ],
)
def test_magic_bytes(head, extensions):
    assert [candidate.extension for candidate in sniff_formats(head)] == extensions


# --- edges: old and rare signatures, small ID3 tags, headers exactly as long as a signature needs --
def id3_tag(size: int) -> bytes:
    """An ID3v2.4 tag of ``size`` bytes of padding after its header; the size is synchsafe."""
    synchsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + synchsafe + b"\x00" * size


@pytest.mark.parametrize(
    ("head", "extensions"),
    [
        pytest.param(b"GIF87a\x08\x00\x08\x00", ["gif"], id="GIF87a"),
        pytest.param(b"\x00\x00\x00\x1cftypM4B ", ["m4a", "mp4"], id="M4B audiobook"),
        pytest.param(id3_tag(200) + b"\xff\xfb\x90\x00", ["mp3"], id="MP3 after a 200-byte ID3 tag"),
        pytest.param(id3_tag(200) + b"fLaC", ["flac"], id="FLAC after a 200-byte ID3 tag"),
        pytest.param(id3_tag(20) + b"\xff\xf1\x50\x80", ["aac"], id="AAC after a 20-byte ID3 tag"),
        pytest.param(id3_tag(0), ["mp3"], id="an ID3 header and nothing after it"),
        pytest.param(id3_tag(0)[:9], [], id="9 bytes: shorter than an ID3 header"),
        pytest.param(b"BM" + b"\x00" * 24, ["bmp"], id="BMP: exactly the 26 bytes of its headers"),
        pytest.param(b"BM" + b"\x00" * 23, [], id="BMP: one byte short"),
        pytest.param(b"RIFF\x00\x00\x00\x00WAVE", ["wav"], id="RIFF: exactly 12 bytes"),
        pytest.param(b"RIFF\x00\x00\x00\x00WAV", [], id="RIFF: one byte short"),
        pytest.param(b"RIFF\x00\x00\x00\x00RMID", [], id="RIFF of a form Konvrt does not read"),
        pytest.param(b"\x1a\x45\xdf\xa3" + b"\x00" * 56 + b"webm", ["webm"], id="EBML: webm within 64 bytes"),
        pytest.param(b"\x1a\x45\xdf\xa3" + b"\x00" * 57 + b"webm", ["mkv"], id="EBML: webm past 64 bytes"),
        pytest.param(b"OggS" + b"\x00" * 116 + b"OpusHead", ["opus"], id="Ogg: OpusHead within 128 bytes"),
        pytest.param(b"OggS" + b"\x00" * 117 + b"OpusHead", ["ogg"], id="Ogg: OpusHead past 128 bytes"),
        # A tag larger than what was read (cover art) hides the stream: MP3 is assumed, the probe decides.
        pytest.param(b"ID3\x04\x00\x00\x01\x00\x00\x14" + b"\x00" * 20 + b"fLaC", ["mp3"], id="a 2 MB ID3 tag"),
        pytest.param(b"\xff\xfb", ["mp3"], id="MPEG audio: the two bytes of a frame's sync and layer"),
        pytest.param(b"\xff", [], id="MPEG audio: one byte"),
        pytest.param(b"\xff\xe0", [], id="MPEG audio: a sync without a layer"),
        pytest.param(b"\xff\xe1", [], id="MPEG audio: a sync and the protection bit, no layer"),
        pytest.param(b"\xff\x06", [], id="MPEG audio: layer bits without a sync"),
    ],
)
def test_magic_bytes_at_the_edges(head, extensions):
    assert [candidate.extension for candidate in sniff_formats(head)] == extensions


def test_an_old_gif87a_image_is_read(tmp_path):
    path = tmp_path / "old.gif"
    Image.new("L", (8, 8), 128).save(path, "GIF")
    assert path.read_bytes()[:6] == b"GIF87a"

    inspection = inspect_upload(path=path, definition=OPERATIONS["image_resize"])

    assert (inspection.extension, inspection.container, inspection.metadata["width"]) == ("gif", "GIF", 8)


def test_an_m4b_audiobook_is_read_as_m4a_audio(media, tmp_path):
    m4a = media.audio(extension="m4a", duration=0.5).read_bytes()
    assert m4a[4:12] == b"ftypM4A "
    audiobook = tmp_path / "book.m4b"
    audiobook.write_bytes(m4a[:8] + b"M4B " + m4a[12:])

    inspection = inspect_upload(path=audiobook, definition=OPERATIONS["audio_convert"])

    assert (inspection.extension, inspection.container, inspection.mime_type) == ("m4a", "mov", "audio/mp4")


@pytest.mark.parametrize(("extension", "container"), [("flac", "flac"), ("aac", "aac")])
def test_audio_behind_a_small_id3_tag_is_read_as_what_follows_the_tag(media, tmp_path, extension, container):
    tagged = tmp_path / f"tagged.{extension}"
    tagged.write_bytes(id3_tag(300) + media.audio(extension=extension, duration=0.5).read_bytes())

    inspection = inspect_upload(path=tagged, definition=OPERATIONS["audio_convert"])

    assert (inspection.extension, inspection.container) == (extension, container)


# --- formats that follow references or need another decoder, named in the refusal -----------------
@pytest.mark.parametrize(
    ("content", "label"),
    [
        (b"#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/a.ts\n", "an HLS playlist"),
        (b"\xef\xbb\xbf\n#EXTM3U\n", "an HLS playlist"),
        (b"ffconcat version 1.0\nfile other.mp4\n", "an FFmpeg concat script"),
        (b"file '/etc/passwd'\n", "an FFmpeg concat script"),
        (b"v=0\no=- 0 0 IN IP4 127.0.0.1\n", "an SDP session description"),
    ],
)
def test_reference_formats_are_refused_by_name_and_logged_for_operators(tmp_path, caplog, content, label):
    path = tmp_path / "movie.mp4"
    path.write_bytes(content)

    with caplog.at_level(logging.WARNING, logger=sniffing.__name__), pytest.raises(UnsupportedMedia) as refusal:
        inspect_upload(path=path, definition=OPERATIONS["video_compress"])

    message = f"This file is {label}, not a video; upload the media file itself."
    assert (refusal.value.message, refusal.value.details) == (message, {"file": [message]})
    assert caplog.messages == [f"Upload refused: {label} (it makes FFmpeg open other files or URLs)"]


@pytest.mark.parametrize(
    ("content", "label"),
    [
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "a PostScript (EPS) document"),
        (b"\xc5\xd0\xd3\xc6" + b"\x00" * 28, "an EPS document"),
        (b'<?xml version="1.0"?><svg/>', "an XML (SVG) document"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "an SVG drawing"),
    ],
)
def test_documents_needing_another_decoder_are_refused_by_name(tmp_path, content, label):
    path = tmp_path / "photo.png"
    path.write_bytes(content)

    with pytest.raises(UnsupportedMedia, match=re.escape(f"This file is {label}, not an image Konvrt can read")):
        inspect_upload(path=path, definition=OPERATIONS["image_resize"])


# --- the worker's caps, applied at upload -----------------------------------------------------------
def test_an_image_over_the_pixel_cap_is_a_validation_error_not_a_damaged_file(media, settings, caplog):
    settings.PROCESSING_MAX_IMAGE_PIXELS = 1000

    with caplog.at_level(logging.INFO, logger=sniffing.__name__), pytest.raises(ValidationFailed) as refusal:
        inspect_upload(path=media.png(width=64, height=64), definition=OPERATIONS["image_resize"])

    message = "This image is too large to process (64×64 pixels); the limit is 0.001 megapixels."
    assert (refusal.value.message, refusal.value.details) == (message, {"file": [message]})
    assert refusal.value.__cause__ is not None
    assert caplog.messages == [f"Upload refused over a processing cap: {message}"]


@pytest.mark.parametrize("kind", ["tif", "heic", "avif"])
def test_new_image_formats_are_held_to_the_pixel_cap_before_decoding(media, settings, kind):
    settings.PROCESSING_MAX_IMAGE_PIXELS = 1000

    with pytest.raises(ValidationFailed, match="too large to process"):
        inspect_upload(path=getattr(media, kind)(), definition=OPERATIONS["image_convert"])


@pytest.mark.parametrize("extension", ["ts", "mpg", "3gp"])
def test_new_video_formats_are_held_to_the_picture_and_duration_caps(media, settings, extension):
    path = media.video(extension=extension, duration=0.5)
    settings.PROCESSING_MAX_VIDEO_PIXELS = 1000
    with pytest.raises(ValidationFailed, match="larger than the 8K frames"):
        inspect_upload(path=path, definition=OPERATIONS["video_convert"])

    settings.PROCESSING_MAX_VIDEO_PIXELS = 10_000_000
    settings.PROCESSING_MAX_DURATION_SECONDS = 0.1
    with pytest.raises(ValidationFailed, match="the limit is"):
        inspect_upload(path=path, definition=OPERATIONS["video_convert"])


def test_a_transport_stream_named_mp4_is_read_as_what_it_is(media, tmp_path):
    disguised = tmp_path / "holiday.mp4"
    disguised.write_bytes(media.video(extension="ts", duration=0.5).read_bytes())

    inspection = inspect_upload(path=disguised, definition=OPERATIONS["video_convert"])

    assert (inspection.extension, inspection.container) == ("ts", "mpegts")


def test_an_image_pillow_refuses_as_a_decompression_bomb_is_over_the_cap_not_damaged(tmp_path, settings, caplog):
    settings.PROCESSING_MAX_IMAGE_PIXELS = 50_000_000
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(width=20_000, height=20_000))

    with caplog.at_level(logging.INFO, logger=sniffing.__name__), pytest.raises(ValidationFailed) as refusal:
        inspect_upload(path=bomb, definition=OPERATIONS["image_resize"])

    message = "This image is too large to process; the limit is 50 megapixels."
    assert (refusal.value.message, refusal.value.details) == (message, {"file": [message]})
    assert isinstance(refusal.value.__cause__, ImageTooLarge)
    assert caplog.messages == [f"Upload refused over a processing cap: {message}"]


def test_a_gif_is_measured_by_the_largest_canvas_its_frames_make(tmp_path, settings):
    settings.PROCESSING_MAX_IMAGE_PIXELS = 100 * 100
    growing = tmp_path / "sticker.gif"
    growing.write_bytes(gif_animation(screen=(16, 16), frames=2, later_frames=(200, 100)))

    with pytest.raises(ValidationFailed, match=r"\(200×100 pixels\)"):
        inspect_upload(path=growing, definition=OPERATIONS["image_convert"])


def test_media_over_the_duration_cap_is_a_validation_error(media, settings):
    settings.PROCESSING_MAX_DURATION_SECONDS = 1

    with pytest.raises(ValidationFailed, match="This file is 2 seconds long; the limit is 1 second."):
        inspect_upload(path=media.audio(duration=2), definition=OPERATIONS["audio_convert"])


def test_a_video_over_the_picture_cap_is_a_validation_error(media, settings):
    settings.PROCESSING_MAX_VIDEO_PIXELS = 100 * 100

    with pytest.raises(ValidationFailed, match=r"\(320×240\)"):
        inspect_upload(path=media.video(duration=0.5), definition=OPERATIONS["video_compress"])
