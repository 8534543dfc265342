"""What went wrong in a job: a sentence for its user, details for operators, and whether trying
again could help.

Errors raised while processing carry that last fact themselves (``ProcessingError.permanent``,
``StorageError.permanent``); ``classify_failure`` reads it, and decides it for everything else
(database and Redis hiccups, a dead work-horse, a full disk) so that the job and RQ's callbacks
apply one policy.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from django import db
from redis.exceptions import RedisError
from rq.exceptions import AbandonedJobError

from apps.core.exceptions import StorageError, ValidationFailed
from apps.processors.exceptions import ProcessingError
from apps.processors.registry import GROUP_NOUNS, OperationDefinition

# What a user reads about an operation removed in an upgrade: nothing routes or runs it any more.
NO_LONGER_OFFERED_MESSAGE = "This operation is no longer offered."


@dataclass(frozen=True)
class Failure:
    message: str  # for the user
    permanent: bool  # trying again cannot help
    detail: str  # for operators


class WorkHorseKilled(Exception):
    """The process running the job died without reporting back (OOM killer, SIGKILL)."""


_TRANSIENT = (db.OperationalError, db.InterfaceError, RedisError, ConnectionError, TimeoutError)


def classify_failure(error: BaseException) -> Failure:
    """What to tell the user about ``error``, and whether trying again could help."""
    if isinstance(error, ProcessingError):
        return Failure(error.user_message, error.permanent, error.operator_detail or repr(error))
    if isinstance(error, StorageError):
        if not error.permanent:
            return Failure("File storage did not answer in time.", False, error.message)
        return Failure(error.message, True, repr(error))
    if isinstance(error, ValidationFailed):
        return Failure(
            "The parameters saved with this operation are not valid any more; please create it again.",
            True,
            f"{error.message} {error.details}",
        )
    if isinstance(error, _TRANSIENT):
        return Failure("A service Konvrt depends on did not answer in time.", False, repr(error))
    if isinstance(error, AbandonedJobError | WorkHorseKilled):
        return Failure("The worker processing this file stopped unexpectedly.", False, repr(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure("The server ran out of disk space while processing this file.", False, repr(error))
    if isinstance(error, OSError):
        return Failure("The worker could not read or write its working files.", False, repr(error))
    return Failure("Something went wrong on our side while processing this file.", True, repr(error))


def time_limit_message(definition: OperationDefinition, seconds: float) -> str:
    """What a user reads when a job ran out of time, e.g. "Processing took longer than the
    30-minute limit for videos."."""
    seconds = round(seconds)
    limit = f"{seconds // 60}-minute" if seconds >= 60 and seconds % 60 == 0 else f"{seconds}-second"
    files = GROUP_NOUNS.get(definition.group, "this kind of file")
    return f"Processing took longer than the {limit} limit for {files}."


def final_failure(failure: Failure) -> Failure:
    """A temporary problem that outlasted RQ's retries (or a job run outside RQ)."""
    return Failure(f"{failure.message} Please try again later.", True, failure.detail)
