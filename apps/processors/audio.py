"""audio_convert and audio_extract: FFmpeg writes MP3, WAV, AAC (ADTS), Ogg Vorbis or FLAC.

Only the first audio stream is mapped (``-vn``): cover art and a video's picture are never decoded,
which keeps extraction from a long video as cheap as reading its audio, and lets audio_convert
take sound that carries a picture track (an M4A with an H.264 video beside its AAC). The output
must last as long as that audio stream, measured from its packets when headers disagree (see
``verification.py``). The input's metadata (ID3
tags, GPS, encoder names) is dropped for privacy. When the input's audio already is what was asked
for (same codec, no resampling, a bitrate no higher than requested), it is copied instead of
re-encoded: faster, and without a second generation of lossy compression.
"""

from __future__ import annotations

import logging

from apps.processors.audio_codecs import can_copy_audio
from apps.processors.contract import ProcessingContext, ProcessingResult
from apps.processors.ffmpeg import input_args, output_args
from apps.processors.formats import Format, MediaType, get_format
from apps.processors.probe import StreamInfo

logger = logging.getLogger(__name__)


# The sample rates MPEG audio layer 3 can carry; anything else is resampled for MP3.
MP3_SAMPLE_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
# libvorbis refuses an average bitrate its tuning tables lack (320k at 22 kHz, anything in mono at
# 8 kHz), so Vorbis is encoded on its quality scale, at the step whose nominal stereo 44.1 kHz
# bitrate is nearest the one asked for; that works at every sample rate and channel count.
VORBIS_QUALITY = {"64k": 0, "96k": 2, "128k": 4, "160k": 5, "192k": 6, "256k": 8, "320k": 9}


def convert_audio(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    return _encode_audio(
        context,
        output_format=parameters["output_format"],
        bitrate=parameters["bitrate"],
        sample_rate=parameters.get("sample_rate"),
        channels=parameters.get("channels"),
    )


def extract_audio(context: ProcessingContext) -> ProcessingResult:
    parameters = context.parameters
    return _encode_audio(context, output_format=parameters["output_format"], bitrate=parameters["bitrate"])


def _encode_audio(
    context: ProcessingContext,
    *,
    output_format: str,
    bitrate: str,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> ProcessingResult:
    info = context.media
    stream = context.audio_stream
    target = get_format(output_format)
    output = context.output_path(output_format)
    copied = can_copy_audio(
        stream,
        codec=target.audio_codec,
        bitrate=None if target.lossless else bitrate,
        sample_rate=sample_rate,
        channels=channels,
    )
    codec_args = ["-c:a", "copy"] if copied else audio_encoder_args(target, stream, bitrate, sample_rate, channels)
    args = [
        *input_args(context.input_path, demuxer=context.demuxer),
        "-map",
        f"0:{stream.index}",
        "-vn",
        "-sn",
        "-dn",
        *codec_args,
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        *output_args(output, muxer=target.encoder),
    ]
    duration = stream.duration or info.duration
    context.run_ffmpeg(args, duration=duration)
    return ProcessingResult(
        path=output,
        extension=output_format,
        media_type=MediaType.AUDIO,
        expect_video=False,
        expect_audio=True,
        expected_duration=duration,
        duration_source=context.measured_from(stream),
        details={"stream_copied": copied},
    )


def audio_encoder_args(
    target: Format, stream: StreamInfo, bitrate: str, sample_rate: int | None, channels: int | None
) -> list[str]:
    args = ["-c:a", target.audio_encoder]
    if target.audio_codec == "vorbis":
        args += ["-q:a", str(VORBIS_QUALITY[bitrate])]
    elif not target.lossless:
        args += ["-b:a", bitrate]
    if sample_rate is None and target.audio_codec == "mp3" and stream.sample_rate not in MP3_SAMPLE_RATES:
        # e.g. 96 kHz studio WAV: LAME refuses it, so pick the nearest rate MP3 can carry.
        sample_rate = 48000 if (stream.sample_rate or 0) > 48000 else 44100
    if sample_rate is not None:
        args += ["-ar", str(sample_rate)]
    if channels is None and target.audio_codec == "mp3" and (stream.channels or 0) > 2:
        channels = 2  # MP3 is mono or stereo only: surround is downmixed
    if channels is not None:
        args += ["-ac", str(channels)]
    return args
