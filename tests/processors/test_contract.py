"""What every processor shares: output names, input checks and caps, stream copy, output checks."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from apps.processors.audio import extract_audio
from apps.processors.audio_codecs import can_copy_audio
from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.exceptions import ProcessingError
from apps.processors.formats import MediaType
from apps.processors.inspection import input_decoder, inspect_input
from apps.processors.parameters import validate_parameters
from apps.processors.probe import StreamInfo, probe_media
from apps.processors.registry import get_operation
from apps.processors.verification import verify_output
from apps.processors.video import compress_video


@pytest.mark.parametrize(
    ("original", "operation", "extension", "expected"),
    [
        ("holiday.mov", "video_compress", "mp4", "holiday_compressed.mp4"),
        ("holiday.final.MOV", "video_convert", "webm", "holiday.final_converted.webm"),
        ("photo.jpeg", "image_resize", "jpg", "photo_resized.jpg"),
        ("talk.mp4", "audio_extract", "mp3", "talk_audio.mp3"),
        ("noextension", "audio_convert", "flac", "noextension_converted.flac"),
        (".mp3", "audio_convert", "wav", "file_converted.wav"),
        ("../../etc/passwd", "image_convert", "jpg", "passwd_converted.jpg"),
        ("C:\\Users\\me\\clip.avi", "video_convert", "mp4", "clip_converted.mp4"),
        ("-vf evil.wav", "audio_convert", "mp3", "vf evil_converted.mp3"),
        ("", "audio_convert", "flac", "file_converted.flac"),
    ],
)
def test_output_names_derive_from_the_original_name(original, operation, extension, expected):
    assert get_operation(operation).output_file_name(original_name=original, extension=extension) == expected


def test_a_long_original_name_is_shortened_but_keeps_what_was_done():
    name = get_operation("video_compress").output_file_name(original_name="a" * 400 + ".mov", extension="mp4")
    assert len(name) <= 200
    assert name.endswith("a_compressed.mp4")


def aac(bit_rate, **extra) -> StreamInfo:
    return StreamInfo(index=0, kind="audio", codec="aac", bit_rate=bit_rate, sample_rate=44100, channels=2, **extra)


def test_audio_is_copied_only_when_nothing_would_change():
    assert can_copy_audio(aac(128000), codec="aac", bitrate="192k")
    assert not can_copy_audio(aac(256000), codec="aac", bitrate="192k")  # the user asked for smaller
    assert not can_copy_audio(aac(None), codec="aac", bitrate="192k")  # unknown: re-encode to be sure
    assert not can_copy_audio(aac(128000), codec="mp3", bitrate="192k")
    assert not can_copy_audio(aac(128000), codec="aac", bitrate="192k", sample_rate=22050)
    assert not can_copy_audio(aac(128000), codec="aac", bitrate="192k", channels=1)
    assert can_copy_audio(aac(128000), codec="aac", bitrate="192k", sample_rate=44100, channels=2)


def test_a_video_longer_than_the_duration_cap_is_refused(settings, media):
    settings.PROCESSING_MAX_DURATION_SECONDS = 1

    with pytest.raises(ProcessingError, match="This file is 2 seconds long; the limit is 1 second."):
        inspect_input(path=media.video(duration=2), extension="mp4", definition=get_operation("video_compress"))


def test_a_video_frame_above_the_pixel_cap_is_refused(settings, media):
    settings.PROCESSING_MAX_VIDEO_PIXELS = 320 * 240 - 1

    with pytest.raises(ProcessingError, match=r"picture \(320×240\) is larger"):
        inspect_input(path=media.video(duration=1), extension="mp4", definition=get_operation("video_convert"))


def test_an_audio_file_is_no_video_to_compress(media):
    with pytest.raises(ProcessingError, match="This file has no video track to compress."):
        inspect_input(
            path=media.audio(extension="m4a", duration=1), extension="m4a", definition=get_operation("video_compress")
        )


def test_the_worker_reads_an_input_from_its_headers_and_takes_the_pixel_format_the_upload_decoded(media):
    path = media.video(duration=1)
    upload = probe_media(path, format_name="mov").as_metadata()

    unrecorded = inspect_input(path=path, extension="mp4", definition=get_operation("video_trim"))
    recorded = inspect_input(
        path=path, extension="mp4", definition=get_operation("video_trim"), recorded_streams=upload["streams"]
    )

    assert unrecorded.video.pixel_format is None  # H.264 tells it only in a decoded picture
    assert recorded.video.pixel_format == "yuv420p"
    assert recorded.streams == [replace(unrecorded.video, pixel_format="yuv420p"), unrecorded.audio]


def test_a_record_of_another_stream_lends_no_pixel_format(media):
    path = media.video(duration=1)
    other = [{"index": 0, "kind": "video", "codec": "vp9", "pixel_format": "yuv444p"}]

    for record in (other, "not a list", None):
        info = inspect_input(
            path=path, extension="mp4", definition=get_operation("video_trim"), recorded_streams=record
        )
        assert info.video.pixel_format is None


def test_an_output_missing_its_audio_fails_the_check(media):
    silent = media.video(duration=1, audio=False)
    result = ProcessingResult(
        path=silent,
        extension="mp4",
        media_type=MediaType.VIDEO,
        expect_video=True,
        expect_audio=True,
        expected_duration=1.0,
    )

    with pytest.raises(ProcessingError, match=r"failed its final check \(its audio track is missing\)"):
        verify_output(result=result, input_info=probe_media(silent))


def test_an_output_of_the_wrong_length_fails_the_check(media):
    short = media.video(duration=1)
    result = ProcessingResult(
        path=short,
        extension="mp4",
        media_type=MediaType.VIDEO,
        expect_video=True,
        expect_audio=True,
        expected_duration=5.0,
    )

    with pytest.raises(ProcessingError, match=r"lasts 1.0 s instead of 5.0 s"):
        verify_output(result=result, input_info=probe_media(short))


def test_an_empty_output_fails_the_check(tmp_path, media):
    empty = tmp_path / "output.mp3"
    empty.write_bytes(b"")
    result = ProcessingResult(path=empty, extension="mp3", media_type=MediaType.AUDIO, expect_audio=True)

    with pytest.raises(ProcessingError, match="no output was written"):
        verify_output(result=result, input_info=probe_media(media.audio(duration=1)))


def test_inputs_are_decoded_as_the_format_the_upload_was_accepted_as():
    assert input_decoder(extension="mp4", media_type=MediaType.VIDEO, recorded="mov") == "mov"
    assert input_decoder(extension="webm", media_type=MediaType.VIDEO, recorded=None) == "matroska"
    assert input_decoder(extension="jpg", media_type=MediaType.IMAGE, recorded="JPEG") == "JPEG"
    # Never a decoder outside the accepted tables, whatever a row says.
    assert input_decoder(extension="mp4", media_type=MediaType.VIDEO, recorded="concat") == "mov"
    assert input_decoder(extension="png", media_type=MediaType.IMAGE, recorded="mov") == "PNG"


def _context(*, operation: str, path, extension: str, media_type: MediaType, workspace) -> ProcessingContext:
    decoder = input_decoder(extension=extension, media_type=media_type, recorded=None)
    return ProcessingContext(
        operation=operation,
        media_type=media_type,
        parameters=validate_parameters(get_operation(operation), {}),
        input_path=path,
        input_extension=extension,
        input_format=decoder,
        input_info=probe_media(path, format_name=decoder),
        workspace=workspace,
        deadline=time.monotonic() + 60,
    )


# Inspection refuses these inputs (required_stream); a processor run on such a file alone says
# which stream it lacks instead of failing on an attribute of None.
def test_a_video_processor_given_no_video_stream_says_so(media, tmp_path):
    context = _context(
        operation="video_compress",
        path=media.audio(extension="m4a", duration=1),
        extension="m4a",
        media_type=MediaType.VIDEO,
        workspace=tmp_path,
    )

    with pytest.raises(TypeError, match="video_compress needs an input with a video stream"):
        compress_video(context)


def test_an_audio_processor_given_no_audio_stream_says_so(media, tmp_path):
    context = _context(
        operation="audio_extract",
        path=media.video(duration=1, audio=False),
        extension="mp4",
        media_type=MediaType.VIDEO,
        workspace=tmp_path,
    )

    with pytest.raises(TypeError, match="audio_extract needs an input with an audio stream"):
        extract_audio(context)


# A processor runs on a file alone: without a progress callback its FFmpeg runs to the end.
def test_a_processor_given_no_progress_callback_runs_ffmpeg_to_the_end(media, tmp_path):
    context = _context(
        operation="audio_extract",
        path=media.video(duration=1),
        extension="mp4",
        media_type=MediaType.VIDEO,
        workspace=tmp_path,
    )

    result = extract_audio(context)

    assert result.path.is_file() and result.path.stat().st_size > 0
    assert verify_output(result=result, input_info=context.input_info).audio is not None
