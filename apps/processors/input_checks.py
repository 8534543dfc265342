"""Parameters that only make sense for some inputs: a trim that starts after the video ends, a
thumbnail at a time it never reaches, a target size too small for the video's length.

An operation names its check in its registry entry (``input_check``): a function
``(parameters, MediaInfo) -> None`` that raises ``ParameterMismatch``. The API runs it at upload,
on what the upload's probe found, and answers 400 on the parameter concerned; the worker runs it
again on its own probe (an input imported from a URL is only probed there), where the same
sentence fails the operation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from django.utils.module_loading import import_string

from apps.core.exceptions import ValidationFailed
from apps.processors.exceptions import ProcessingError
from apps.processors.probe import MediaInfo, StreamInfo
from apps.processors.registry import OperationDefinition

InputCheck = Callable[[dict[str, Any], MediaInfo], None]


class ParameterMismatch(ProcessingError):
    """A parameter cannot work on this input; permanent, with a sentence naming the limit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, permanent=True)
        self.field = field


def check_input(definition: OperationDefinition, parameters: dict[str, Any], info: MediaInfo) -> None:
    """Run ``definition``'s input check, if it has one; raises ``ParameterMismatch``."""
    if definition.input_check:
        check: InputCheck = import_string(definition.input_check)
        check(parameters, info)


def check_upload(definition: OperationDefinition, parameters: dict[str, Any], metadata: dict[str, Any]) -> None:
    """The check at upload, on the probe's metadata as the API stores it: ``ValidationFailed``
    (400) on the parameter concerned."""
    if not definition.input_check or "streams" not in metadata:
        return
    try:
        check_input(definition, parameters, _media_info(metadata))
    except ParameterMismatch as e:
        raise ValidationFailed(e.user_message, details={e.field: [e.user_message]}) from e


def _media_info(metadata: dict[str, Any]) -> MediaInfo:
    known = {field.name for field in fields(StreamInfo)}
    return MediaInfo(
        format_name=str(metadata.get("format", "")),
        duration=metadata.get("duration"),
        size=0,
        bit_rate=metadata.get("bitrate"),
        streams=[StreamInfo(**{k: v for k, v in stream.items() if k in known}) for stream in metadata["streams"]],
    )


def seconds(value: float) -> str:
    """A time as people read it in a message: ``12.5 s``, ``3 s``."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + " s"
