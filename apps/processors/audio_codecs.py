"""Audio stream choices shared by the audio and video processors: when the input's audio can be
copied as it is instead of re-encoded."""

from __future__ import annotations

from apps.processors.probe import StreamInfo


def bitrate_bits(bitrate: str) -> int:
    """``"192k"`` → 192000."""
    return int(bitrate.rstrip("k")) * 1000


def can_copy_audio(
    stream: StreamInfo,
    *,
    codec: str,
    bitrate: str | None,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> bool:
    """Whether the input's audio can be copied as it is instead of re-encoded: same codec, no
    sample rate or channel change asked for, and (for lossy codecs) a source bitrate no higher than
    the one asked for, since re-encoding to a higher bitrate only loses quality and time."""
    if stream.codec != codec:
        return False
    if sample_rate is not None and sample_rate != stream.sample_rate:
        return False
    if channels is not None and channels != stream.channels:
        return False
    if bitrate is None:
        return True
    return stream.bit_rate is not None and stream.bit_rate <= bitrate_bits(bitrate) * 1.05
