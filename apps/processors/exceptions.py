"""Errors raised while processing media.

Each carries a message for the end user, and whether trying again could help: permanent errors
(bad input, codec errors) fail the operation at once; retryable ones (storage or network
timeouts) go back through RQ's Retry. Details for operators (FFmpeg's stderr, exception text)
travel separately in ``operator_detail`` and never reach the user.
"""

from __future__ import annotations


class ProcessingError(Exception):
    default_message = "The file could not be processed."

    def __init__(self, message: str | None = None, *, permanent: bool = True, operator_detail: str = "") -> None:
        self.user_message = message or self.default_message
        self.permanent = permanent
        self.operator_detail = operator_detail
        super().__init__(self.user_message)


class ProbeError(ProcessingError):
    default_message = "The file could not be read as media. It may be damaged or not what its name says."


class FFmpegError(ProcessingError):
    """FFmpeg exited with an error, or had to be stopped.

    ``stderr_tail`` holds FFmpeg's last lines of output for the logs and the operation's metadata.
    """

    default_message = "The file could not be processed. It may be damaged or use a codec we cannot read."

    def __init__(
        self,
        message: str | None = None,
        *,
        permanent: bool = True,
        stderr_tail: str = "",
        returncode: int | None = None,
    ) -> None:
        super().__init__(message, permanent=permanent, operator_detail=stderr_tail)
        self.stderr_tail = stderr_tail
        self.returncode = returncode


class FFmpegTimeout(FFmpegError):
    """FFmpeg ran past the time it was given; it has been stopped."""

    default_message = "Processing took longer than the time allowed."


class OperationStopped(Exception):
    """The operation no longer wants this work (cancelled, deleted or taken over by a newer
    attempt). Not an error: the worker stops quietly and leaves the operation as it is."""
