"""Probing the generated media: streams, durations, sizes; garbage is a clear ProbeError."""

from __future__ import annotations

import subprocess

import pytest

from apps.processors.exceptions import ProbeError
from apps.processors.ffmpeg import resolve_ffmpeg_binary
from apps.processors.probe import keyframe_at_or_before, opens_on_keyframe, probe_image, probe_media


def test_video_with_audio(media):
    info = probe_media(media.video(duration=2, width=320, height=240))

    assert info.duration == pytest.approx(2.0, abs=0.15)
    assert (info.video.width, info.video.height, info.video.codec) == (320, 240, "h264")
    assert info.video.frame_rate == pytest.approx(25)
    assert info.audio.codec == "aac"
    assert info.audio.sample_rate == 44100
    assert info.audio.channels == 2
    assert info.size > 0


@pytest.mark.parametrize("extension", ["mp4", "webm", "mkv", "avi", "ts"])
def test_a_header_only_probe_reads_all_but_a_pixel_format_only_a_picture_tells(media, extension):
    path = media.video(extension=extension, duration=1)
    demuxer = {"mp4": "mov", "webm": "matroska", "mkv": "matroska", "avi": "avi", "ts": "mpegts"}[extension]

    full, headers = (
        probe_media(path, format_name=demuxer),
        probe_media(path, format_name=demuxer, decode_pictures=False),
    )

    assert (headers.format_name, headers.duration, headers.bit_rate) == (full.format_name, full.duration, full.bit_rate)
    assert [(s.kind, s.codec, s.width, s.height, s.frame_rate, s.sample_rate, s.channels) for s in headers.streams] == [
        (s.kind, s.codec, s.width, s.height, s.frame_rate, s.sample_rate, s.channels) for s in full.streams
    ]
    assert headers.video.pixel_format in (None, full.video.pixel_format)


def test_a_copy_from_the_start_needs_no_keyframe_search(tmp_path):
    # Nothing is opened: the file need not even exist.
    assert keyframe_at_or_before(tmp_path / "absent.mp4", format_name="mov", stream_index=0, seconds=0) == 0.0


def test_the_first_packet_of_a_file_is_a_keyframe_and_of_a_cut_between_keyframes_is_not(media, tmp_path):
    source = media.video(duration=2)
    cut = tmp_path / "cut.mp4"
    command = [resolve_ffmpeg_binary(), "-loglevel", "error", "-y", "-i", str(source), "-ss", "0.5", "-t", "1"]
    subprocess.run([*command, "-c", "copy", "-copyinkf", str(cut)], check=True, timeout=60)

    assert opens_on_keyframe(source, format_name="mov", stream_index=0)
    assert not opens_on_keyframe(cut, format_name="mov", stream_index=0)


def test_silent_video_has_no_audio_stream(media):
    info = probe_media(media.video(audio=False))
    assert info.video is not None
    assert info.audio is None
    assert info.audio_streams == []


@pytest.mark.parametrize(
    ("extension", "video_codec"),
    [("webm", "vp9"), ("avi", "mpeg4"), ("mkv", "h264"), ("mov", "h264"), ("wmv", "wmv2"), ("flv", "flv1")],
)
def test_every_accepted_video_container_probes(media, extension, video_codec):
    info = probe_media(media.video(extension=extension, duration=1))
    assert info.video.codec == video_codec
    assert info.audio is not None
    assert info.duration == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize(
    ("extension", "codec"),
    [
        ("wav", "pcm_s16le"),
        ("mp3", "mp3"),
        ("aac", "aac"),
        ("m4a", "aac"),
        ("ogg", "vorbis"),
        ("flac", "flac"),
        ("opus", "opus"),
    ],
)
def test_every_accepted_audio_format_probes(media, extension, codec):
    info = probe_media(media.audio(extension=extension, channels=1))
    assert info.audio.codec == codec
    assert info.audio.channels == 1
    assert info.video is None
    assert info.duration == pytest.approx(2.0, abs=0.2)


def test_cover_art_is_not_mistaken_for_video(media):
    info = probe_media(media.audio(extension="mp3", cover_art=True))
    assert any(stream.is_attached_picture for stream in info.streams)
    assert info.video is None
    assert info.audio is not None


def test_metadata_summary_is_json_ready(media):
    import json

    metadata = probe_media(media.video()).as_metadata()
    assert metadata["width"] == 320
    assert metadata["audio_codec"] == "aac"
    json.dumps(metadata)


def test_text_pretending_to_be_video_is_a_probe_error(media):
    with pytest.raises(ProbeError, match="Could not read"):
        probe_media(media.text(extension="mp4"))


def test_truncated_video_is_a_probe_error_or_reports_what_is_left(media, tmp_path):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(media.video().read_bytes()[:200])
    with pytest.raises(ProbeError):
        probe_media(truncated)


def test_pinned_demuxer_refuses_a_different_container(media):
    with pytest.raises(ProbeError):
        probe_media(media.audio(extension="wav"), format_name="mov")


def test_playlist_cannot_reach_other_files(tmp_path, media):
    playlist = tmp_path / "evil.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{media.video()}\n#EXT-X-ENDLIST\n")
    with pytest.raises(ProbeError):
        probe_media(playlist, format_name="mov")


@pytest.mark.parametrize(
    ("kind", "pillow_format", "expected"),
    [
        ("jpeg", "JPEG", (64, 32, 1)),
        ("png", "PNG", (64, 64, 1)),
        ("gif", "GIF", (32, 32, 3)),
        ("webp", "WEBP", (48, 48, 1)),
        ("bmp", "BMP", (40, 30, 1)),
    ],
)
def test_images_probe(media, kind, pillow_format, expected):
    info = probe_image(getattr(media, kind)(), allowed_formats=(pillow_format,))
    assert (info.width, info.height, info.frames) == expected
    assert info.format_name == pillow_format


def test_image_outside_the_allowlist_is_refused(media):
    with pytest.raises(ProbeError):
        probe_image(media.png(), allowed_formats=("JPEG",))
