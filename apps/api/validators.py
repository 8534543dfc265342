"""Checks of an operation request that need no file contents: the header, the size, the name."""

from __future__ import annotations

import re

from django.conf import settings

from apps.core.exceptions import FileTooLarge, UnsupportedMedia, ValidationFailed
from apps.core.utils import file_extension, human_size
from apps.processors.registry import OPERATIONS, OperationDefinition

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


def validate_idempotency_key(value: str | None) -> str | None:
    """The Idempotency-Key header's value, ``None`` when absent, a 400 when malformed."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if len(value) > IDEMPOTENCY_KEY_MAX_LENGTH or not _IDEMPOTENCY_KEY.match(value):
        raise ValidationFailed(
            "The Idempotency-Key header is not valid.",
            details={
                IDEMPOTENCY_KEY_HEADER: [
                    f"Use up to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters without spaces, "
                    "for example a UUID."
                ]
            },
        )
    return value


def validate_extension(*, definition: OperationDefinition, file_name: str) -> str:
    """The file's extension when ``definition`` accepts it, else 415."""
    extension = file_extension(file_name)
    if not definition.accepts_extension(extension):
        accepted = ", ".join(definition.input_formats)
        shown = f".{extension} files" if extension else "Files without an extension"
        message = f"{shown} are not accepted by {definition.name}. Accepted formats: {accepted}."
        raise UnsupportedMedia(message, details={"file": [message]})
    return extension


def validate_size(*, size: int, limit: int) -> None:
    if size > limit:
        raise file_too_large(limit)


def file_too_large(limit: int) -> FileTooLarge:
    message = f"The file is larger than the {human_size(limit)} this operation accepts."
    return FileTooLarge(message, details={"file": [message], "max_file_size": limit})


def upload_limit_for(file_name: str) -> int:
    """The largest upload any operation accepts for a file of this name's extension (the largest
    of all limits when no operation accepts it: that is refused later, with a clearer 415)."""
    extension = file_extension(file_name)
    limits = [d.max_file_size for d in OPERATIONS.values() if d.accepts_extension(extension)]
    return max(limits) if limits else largest_upload_limit()


def largest_upload_limit() -> int:
    return max(settings.MAX_FILE_SIZE.values())
