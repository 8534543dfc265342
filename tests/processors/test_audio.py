"""audio_convert and audio_extract on real FFmpeg: codecs, containers, rates, channels, stream copy."""

from __future__ import annotations

import pytest

from apps.operations.enums import FileType
from apps.processors.probe import probe_media
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
