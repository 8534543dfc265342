"""audio_convert and audio_extract on real FFmpeg: codecs, containers, rates, channels, stream copy."""

from __future__ import annotations

import subprocess

import pytest

from apps.operations.enums import FileType
from apps.processors.contract import ProcessingResult, StreamSource
from apps.processors.exceptions import ProcessingError
from apps.processors.ffmpeg import resolve_ffmpeg_binary
from apps.processors.formats import MediaType
from apps.processors.probe import measure_stream_duration, probe_media
from apps.processors.verification import verify_output
from tests.processors.conftest import assert_completed, assert_failed_keeping_input

pytestmark = pytest.mark.django_db

# output format → (demuxer to read it back with, codec, MIME type)
OUTPUTS = {
    "mp3": ("mp3", "mp3", "audio/mpeg"),
    "wav": ("wav", "pcm_s16le", "audio/wav"),
    "aac": ("aac", "aac", "audio/aac"),
    "ogg": ("ogg", "vorbis", "audio/ogg"),
    "flac": ("flac", "flac", "audio/flac"),
}


def probe_output(operation, output_path, output_format):
    return probe_media(output_path(operation), format_name=OUTPUTS[output_format][0])


@pytest.mark.parametrize("output_format", sorted(OUTPUTS))
def test_convert_writes_each_format_with_its_codec(media, run_operation, output_path, output_format):
    operation = run_operation(
        "audio_convert", media.audio(extension="wav", duration=1), {"output_format": output_format}, name="song.wav"
    )

    assert_completed(operation)
    info = probe_output(operation, output_path, output_format)
    _, codec, mime_type = OUTPUTS[output_format]
    assert info.audio.codec == codec
    assert info.video is None
    assert (info.audio.sample_rate, info.audio.channels) == (44100, 2)
    assert info.duration == pytest.approx(1.0, abs=0.15)
    result = operation.files.get(file_type=FileType.OUTPUT)
    assert result.file_name == f"song_converted.{output_format}"
    assert result.mime_type == mime_type


@pytest.mark.parametrize("output_format", ["mp3", "ogg", "flac"])
def test_sample_rate_and_channels_are_applied(media, run_operation, output_path, output_format):
    parameters = {"output_format": output_format, "sample_rate": 22050, "channels": 1}

    operation = run_operation("audio_convert", media.audio(extension="wav", duration=1), parameters)

    assert_completed(operation)
    audio = probe_output(operation, output_path, output_format).audio
    assert (audio.sample_rate, audio.channels) == (22050, 1)


def test_the_bitrate_sets_the_size_of_lossy_audio(media, run_operation):
    source = media.audio(extension="wav", duration=2)

    low = run_operation("audio_convert", source, {"output_format": "mp3", "bitrate": "64k"})
    high = run_operation("audio_convert", source, {"output_format": "mp3", "bitrate": "320k"})

    assert_completed(low)
    assert_completed(high)
    low_size = low.files.get(file_type=FileType.OUTPUT).file_size
    high_size = high.files.get(file_type=FileType.OUTPUT).file_size
    assert low_size == pytest.approx(64000 / 8 * 2, rel=0.25)
    assert high_size == pytest.approx(320000 / 8 * 2, rel=0.25)


@pytest.mark.parametrize("extension", ["mp3", "wav", "aac", "m4a", "ogg", "flac", "opus"])
def test_every_accepted_audio_format_is_read(media, run_operation, output_path, extension):
    operation = run_operation("audio_convert", media.audio(extension=extension, duration=1), {"output_format": "mp3"})

    assert_completed(operation)
    assert probe_output(operation, output_path, "mp3").duration == pytest.approx(1.0, abs=0.15)


def test_audio_that_already_fits_is_copied_not_reencoded(media, run_operation, output_path):
    source = media.audio(extension="m4a", duration=1)  # AAC at 128 kb/s in MP4

    copied = run_operation("audio_convert", source, {"output_format": "aac", "bitrate": "192k"})
    reencoded = run_operation("audio_convert", source, {"output_format": "aac", "bitrate": "64k"})

    for operation in (copied, reencoded):
        assert_completed(operation)
        assert probe_output(operation, output_path, "aac").audio.codec == "aac"
    assert copied.files.get(file_type=FileType.OUTPUT).metadata["stream_copied"] is True
    assert reencoded.files.get(file_type=FileType.OUTPUT).metadata["stream_copied"] is False


def test_a_high_sample_rate_is_brought_within_what_mp3_can_carry(media, run_operation, output_path):
    operation = run_operation(
        "audio_convert", media.audio(extension="wav", sample_rate=96000, duration=1), {"output_format": "mp3"}
    )

    assert_completed(operation)
    assert probe_output(operation, output_path, "mp3").audio.sample_rate == 48000


def test_cover_art_is_not_carried_into_the_output(media, run_operation, output_path):
    operation = run_operation(
        "audio_convert", media.audio(extension="mp3", cover_art=True, duration=1), {"output_format": "flac"}
    )

    assert_completed(operation)
    info = probe_output(operation, output_path, "flac")
    assert [stream.kind for stream in info.streams] == ["audio"]


@pytest.mark.parametrize("output_format", sorted(OUTPUTS))
def test_extract_takes_the_audio_track_of_a_video(media, run_operation, output_path, output_format):
    operation = run_operation(
        "audio_extract", media.video(duration=1), {"output_format": output_format}, name="holiday.mov"
    )

    assert_completed(operation)
    info = probe_output(operation, output_path, output_format)
    assert info.video is None
    assert info.audio.codec == OUTPUTS[output_format][1]
    assert info.duration == pytest.approx(1.0, abs=0.15)
    result = operation.files.get(file_type=FileType.OUTPUT)
    assert result.file_name == f"holiday_audio.{output_format}"
    assert result.metadata["stream_copied"] is (output_format == "aac")  # the video's AAC at 96 kb/s fits


def test_extract_defaults_to_mp3(media, run_operation, output_path):
    operation = run_operation("audio_extract", media.video(extension="webm", duration=1))

    assert_completed(operation)
    assert probe_output(operation, output_path, "mp3").audio.codec == "mp3"


def test_extract_from_a_silent_video_fails_with_a_clear_message(media, run_operation, storage_root):
    # Refused at upload since the probe knows (test_sniffing); the worker checks again all the same.
    operation = run_operation("audio_extract", media.video(duration=1, audio=False), inspect=False)

    assert_failed_keeping_input(operation, storage_root, "This video has no audio track to extract.")
    assert operation.error_message == "This video has no audio track to extract."


def test_a_file_that_is_not_audio_fails_clearly(media, run_operation, storage_root):
    # What the API would refuse: the worker must not trust the row.
    operation = run_operation("audio_convert", media.text(extension="flac"), {"output_format": "mp3"}, inspect=False)

    assert_failed_keeping_input(operation, storage_root, "could not be read as FLAC")


@pytest.mark.parametrize("output_format", ["mp3", "aac", "ogg"])
@pytest.mark.parametrize(
    ("sample_rate", "channels", "bitrate"), [(8000, 1, "320k"), (8000, 1, "64k"), (48000, 2, "320k")]
)
def test_lossy_formats_encode_at_the_extremes_of_rate_channels_and_bitrate(
    media, run_operation, output_path, output_format, sample_rate, channels, bitrate
):
    parameters = {"output_format": output_format, "sample_rate": sample_rate, "channels": channels, "bitrate": bitrate}

    operation = run_operation("audio_convert", media.audio(extension="wav", duration=1), parameters)

    assert_completed(operation)
    audio = probe_output(operation, output_path, output_format).audio
    assert (audio.sample_rate, audio.channels) == (sample_rate, channels)


# --- real media behaves (issue: headers and tracks that disagree) ---------------------------------
def ffmpeg(*args: str) -> None:
    subprocess.run([resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=60)


def audio_length(path, demuxer: str) -> float:
    info = probe_media(path, format_name=demuxer)
    measured = measure_stream_duration(path, format_name=demuxer, stream_index=info.audio.index)
    assert measured is not None
    return measured


def test_convert_of_an_m4a_carrying_a_video_track_gives_its_sound(media, run_operation, output_path, tmp_path):
    song = tmp_path / "song.m4a"
    song.write_bytes(media.video(duration=1).read_bytes())  # H.264 beside AAC, as some phones write

    operation = run_operation("audio_convert", song, {"output_format": "mp3"})

    assert_completed(operation)
    output = probe_output(operation, output_path, "mp3")
    assert output.video is None and output.audio.codec == "mp3"
    assert output.duration == pytest.approx(1.0, abs=0.15)


def test_extract_of_an_audio_track_shorter_than_its_video_checks_the_tracks_length(
    media, run_operation, output_path, tmp_path
):
    # Matroska gives no per-track duration: the container's (the video's 4 s) is all the header says.
    clip = tmp_path / "clip.mkv"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=4",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1.5",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libvorbis", str(clip),
    )  # fmt: skip
    assert probe_media(clip, format_name="matroska").duration == pytest.approx(4.0, abs=0.1)

    operation = run_operation("audio_extract", clip, {"output_format": "wav"})

    assert_completed(operation)
    assert audio_length(output_path(operation), "wav") == pytest.approx(1.5, abs=0.1)


def cut(path, tmp_path, name: str, keep: float) -> object:
    shortened = tmp_path / name
    data = path.read_bytes()
    shortened.write_bytes(data[: int(len(data) * keep)])
    return shortened


@pytest.mark.parametrize(("extension", "demuxer"), [("mp3", "mp3"), ("flac", "flac")])
def test_a_header_overstating_the_length_does_not_fail_a_right_output(
    media, run_operation, output_path, tmp_path, extension, demuxer
):
    # LAME's Xing header and FLAC's STREAMINFO count the samples of the whole 6 s; a third is there.
    whole = media.audio(extension=extension, duration=6)
    overstated = cut(whole, tmp_path, f"overstated.{extension}", keep=0.34)
    header = probe_media(overstated, format_name=demuxer).duration
    real = audio_length(overstated, demuxer)
    assert header == pytest.approx(6.0, abs=0.1) and real < 2.5

    operation = run_operation("audio_convert", overstated, {"output_format": "ogg"})

    assert_completed(operation)
    assert audio_length(output_path(operation), "ogg") == pytest.approx(real, abs=0.1)


def test_an_output_shorter_than_its_measured_input_still_fails_the_check(media, tmp_path):
    # The measurement only settles a disagreement of headers: a short output stays refused.
    source = media.audio(extension="wav", duration=3)
    short = media.audio(extension="mp3", duration=1)
    result = ProcessingResult(
        path=short,
        extension="mp3",
        media_type=MediaType.AUDIO,
        expect_audio=True,
        expected_duration=3.0,
        duration_source=StreamSource(path=source, demuxer="wav", stream_index=0, kind="audio"),
    )

    with pytest.raises(ProcessingError, match=r"lasts 1\.\d s instead of 3\.0 s"):
        verify_output(result=result, input_info=probe_media(source, format_name="wav"))


@pytest.mark.parametrize("extension", ["oga", "aiff", "wma"])
def test_new_audio_inputs_are_converted(media, run_operation, output_path, extension):
    operation = run_operation("audio_convert", media.audio(extension=extension, duration=1), {"output_format": "mp3"})

    assert_completed(operation)
    assert probe_output(operation, output_path, "mp3").duration == pytest.approx(1.0, abs=0.15)


def ogg_crc(page: bytes) -> int:
    """The CRC-32 of an Ogg page (polynomial 0x04C11DB7, unreflected, its own field zeroed)."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def with_last_granule(data: bytes, granule: int) -> bytes:
    """An Ogg file whose last page claims ``granule`` samples (its CRC made right again): how an
    Opus or Vorbis file written by a streamer that was cut short, or a broken tagger, overstates
    its length."""
    last = data.rindex(b"OggS")
    page = bytearray(data[last:])
    page[6:14] = granule.to_bytes(8, "little")
    page[22:26] = b"\0\0\0\0"
    page[22:26] = ogg_crc(bytes(page)).to_bytes(4, "little")
    return data[:last] + bytes(page)


def test_an_ogg_opus_whose_last_page_overstates_its_length_is_converted(media, run_operation, output_path, tmp_path):
    overstated = tmp_path / "stream.opus"
    overstated.write_bytes(with_last_granule(media.audio(extension="opus", duration=2).read_bytes(), 48000 * 30))
    assert probe_media(overstated, format_name="ogg").duration == pytest.approx(30, abs=0.5)

    operation = run_operation("audio_convert", overstated, {"output_format": "mp3"})

    assert_completed(operation)
    assert audio_length(output_path(operation), "mp3") == pytest.approx(2.0, abs=0.15)
