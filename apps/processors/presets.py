"""Presets: an operation with parameters chosen for a common goal ("fit a Discord upload").

They are data beside the registry: ``GET /presets/`` lists them, and ``POST /operations/`` takes a
``preset`` instead of an ``operation``, the parameters given with it overriding the preset's. A
preset's parameters are validated against its operation's schema like any client's (a test keeps
every entry valid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.processors.registry import OPERATIONS, OperationDefinition


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    operation: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def definition(self) -> OperationDefinition:
        return OPERATIONS[self.operation]

    def merged_parameters(self, given: dict[str, Any]) -> dict[str, Any]:
        """The preset's parameters with ``given`` on top."""
        return {**self.parameters, **given}


class UnknownPreset(LookupError):
    """No preset of that name."""


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="discord",
            title="For Discord",
            description=(
                "An MP4 of at most 10 MB (Discord's upload limit without Nitro) and at most 720 lines; a long video "
                "is made smaller still so that it stays watchable."
            ),
            operation="video_compress",
            parameters={"target_size_mb": 10, "max_height": 720, "audio_bitrate": "96k", "preset": "medium"},
        ),
        Preset(
            name="email",
            title="For email",
            description="An MP4 of at most 25 MB, the attachment limit of most mail services.",
            operation="video_compress",
            parameters={"target_size_mb": 25, "max_height": 1080, "audio_bitrate": "128k"},
        ),
        Preset(
            name="web-720p",
            title="Web 720p",
            description="An MP4 for a web page: 720 lines at most, good quality, starts playing before it has loaded.",
            operation="video_compress",
            parameters={"max_height": 720, "quality": 23, "preset": "medium", "audio_bitrate": "128k"},
        ),
        Preset(
            name="podcast",
            title="Podcast loudness",
            description="An MP3 at -16 LUFS with peaks under -1.5 dBTP, the loudness podcast platforms recommend.",
            operation="audio_normalize",
            parameters={"target_lufs": -16, "true_peak": -1.5, "output_format": "mp3", "bitrate": "128k"},
        ),
        Preset(
            name="thumbnail",
            title="Thumbnail",
            description="A representative frame (never a black or blank one) as a 640-pixel-wide JPEG.",
            operation="video_thumbnail",
            parameters={"width": 640, "output_format": "jpg"},
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPreset(f"No preset is called {name!r}.") from None
