"""Jobs queued by Konvrt 1.0 name ``apps.processors.rq_workers``: after an upgrade a real worker
still runs them, and their failure callback still fails the operation."""

from __future__ import annotations

import django_rq
import pytest
from rq import Callback

from apps.operations.enums import OperationStatus
from apps.operations.services import lifecycle
from tests.processors.conftest import assert_completed

OLD_JOB = "apps.processors.rq_workers.process_operation"
OLD_FAILURE_CALLBACK = "apps.processors.rq_workers.on_job_failure"


def queue_as_1_0_did(operation) -> None:
    job_id = f"operation-{operation.id}-0"
    assert lifecycle.operation_mark_queued(operation_id=operation.id, job_id=job_id)
    django_rq.get_queue("image_queue").enqueue(
        OLD_JOB, str(operation.id), job_id=job_id, on_failure=Callback(OLD_FAILURE_CALLBACK)
    )


@pytest.mark.django_db
def test_a_job_queued_under_the_1_0_path_runs_to_completion(media, submit, run_worker):
    operation = submit("image_convert", media.png(), {"output_format": "jpg"}, enqueue=False)
    queue_as_1_0_did(operation)

    run_worker("image_queue")

    operation.refresh_from_db()
    assert_completed(operation)


@pytest.mark.django_db
def test_the_1_0_failure_callback_fails_the_operation_rq_gave_up_on(media, submit, run_worker, monkeypatch):
    operation = submit("image_convert", media.png(), {"output_format": "jpg"}, enqueue=False)
    queue_as_1_0_did(operation)

    def broken_claim(**kwargs):
        raise RuntimeError("the claim itself broke")  # escapes process_operation's own handling

    monkeypatch.setattr(lifecycle, "operation_claim", broken_claim)
    run_worker("image_queue")

    operation.refresh_from_db()
    assert operation.status == OperationStatus.FAILED
    assert operation.error_message == "Something went wrong on our side while processing this file."
