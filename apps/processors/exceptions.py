"""Errors raised while processing media.

Each carries a message for the end user, and whether trying again could help: permanent errors
(bad input, codec errors) fail the operation at once; retryable ones (storage or network
timeouts) go back through RQ's Retry.
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
