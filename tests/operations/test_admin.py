"""The admin moves operations only through the services: nothing is added or edited, and cancel,
retry and delete are actions (real POSTs, so CSRF and permissions apply) whose refusals are reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django_rq import get_queue
from rq.job import Job, JobStatus

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import File, Operation
from apps.operations.services import operations_manager
from apps.processors.registry import OPERATIONS

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "a" * 32
CHANGELIST = reverse("admin:operations_operation_changelist")


def change_url(operation: Operation) -> str:
    return reverse("admin:operations_operation_change", args=[operation.id])


def delete_url(operation: Operation) -> str:
    return reverse("admin:operations_operation_delete", args=[operation.id])


def create(media) -> Operation:
    """A queued operation, as the API creates it: its input stored, its job on the image queue."""
    return operations_manager.operation_create(
        session_key=KEY,
        definition=OPERATIONS["image_resize"],
        parameters={"width": 10, "maintain_aspect_ratio": True},
        upload=SimpleUploadedFile("photo.png", media.png().read_bytes()),
    ).operation


def completed(media, run_worker) -> Operation:
    operation = create(media)
    run_worker("image_queue")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.COMPLETED
    return operation


def stored(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() and "temp" not in path.parts)


def row(operation: Operation) -> dict:
    return Operation.objects.values().get(id=operation.id)


def run_action(client: Client, action: str, *operations: Operation, **extra: str):
    return client.post(
        CHANGELIST,
        {"action": action, ACTION_CHECKBOX_NAME: [str(operation.id) for operation in operations], **extra},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- nothing is edited or added ---------------------------------------------------------------------
def test_the_change_form_cannot_move_a_status(admin_client, media):
    operation = create(media)
    before = row(operation)

    page = admin_client.get(change_url(operation))
    assert page.status_code == 200
    assert 'name="status"' not in page.content.decode()
    assert 'name="_save"' not in page.content.decode()

    response = admin_client.post(
        change_url(operation),
        {
            "status": "completed",
            "progress": "100",
            "phase": "storing",
            "job_id": "forged",
            "attempt": "7",
            "error_message": "edited",
            "expires_at_0": "2000-01-01",
            "expires_at_1": "00:00:00",
            "is_deleted": "on",
            "metadata": "{}",
            "_save": "Save",
        },
    )

    assert response.status_code == 403
    assert row(operation) == before
    assert before["status"] == OperationStatus.QUEUED


def test_a_file_cannot_be_edited_or_deleted_on_its_own(admin_client, media, storage_root):
    operation = create(media)
    file = operation.files.get()
    files_before = stored(storage_root)

    edit = admin_client.post(
        reverse("admin:operations_file_change", args=[file.id]),
        {"file_path": "../../etc/passwd", "file_name": "evil.sh", "file_size": "1"},
    )
    delete = admin_client.post(reverse("admin:operations_file_delete", args=[file.id]), {"post": "yes"})

    assert edit.status_code == 403
    assert delete.status_code == 403
    assert File.objects.values().get(id=file.id)["file_path"] == file.file_path
    assert stored(storage_root) == files_before


def test_nothing_can_be_added(admin_client):
    for name in ("operation", "file"):
        url = reverse(f"admin:operations_{name}_add")
        assert admin_client.get(url).status_code == 403
        assert admin_client.post(url, {"operation": "image_resize", "session_key": KEY}).status_code == 403
    assert not Operation.objects.exists()
    assert not File.objects.exists()


def test_django_bulk_delete_is_not_offered(admin_client, media, storage_root):
    operation = create(media)
    files_before = stored(storage_root)

    response = run_action(admin_client, "delete_selected", operation, post="yes")

    assert "delete_selected" not in dict(response.context["action_form"].fields["action"].choices)
    assert Operation.objects.filter(id=operation.id, is_deleted=False).exists()
    assert stored(storage_root) == files_before


# --- CSRF and permissions ---------------------------------------------------------------------------
def test_actions_need_the_csrf_token(admin_user, media):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    operation = create(media)
    data = {"action": "cancel_operations", ACTION_CHECKBOX_NAME: [str(operation.id)]}

    assert client.post(CHANGELIST, data).status_code == 403
    assert row(operation)["status"] == OperationStatus.QUEUED

    token = client.get(CHANGELIST).context["csrf_token"]
    assert client.post(CHANGELIST, {**data, "csrfmiddlewaretoken": token}).status_code == 302
    assert row(operation)["status"] == OperationStatus.CANCELLED


@pytest.mark.parametrize(
    ("permissions", "offered"),
    [
        ({"view_operation"}, set()),
        ({"view_operation", "change_operation"}, {"cancel_operations", "retry_operations"}),
        ({"view_operation", "delete_operation"}, {"delete_operations"}),
    ],
)
def test_actions_follow_the_model_permissions(django_user_model, media, permissions, offered):
    user = django_user_model.objects.create_user(username="staff", password="unused", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="operations", codename__in=permissions))
    client = Client()
    client.force_login(user)
    operation = create(media)

    page = client.get(CHANGELIST)
    form = page.context["action_form"]
    assert (set(dict(form.fields["action"].choices)) - {""} if form else set()) == offered

    for action in {"cancel_operations", "delete_operations"} - offered:
        client.post(CHANGELIST, {"action": action, ACTION_CHECKBOX_NAME: [str(operation.id)], "post": "yes"})
    assert client.get(delete_url(operation)).status_code == (200 if "delete_operations" in offered else 403)
    assert client.post(change_url(operation), {"status": "cancelled"}).status_code == 403
    after = row(operation)
    assert (after["status"], after["is_deleted"]) == (OperationStatus.QUEUED, False)


# --- the actions, through the services --------------------------------------------------------------
def test_cancel_cancels_and_withdraws_the_queued_job(admin_client, media):
    first, second = create(media), create(media)
    queue = get_queue("image_queue")
    assert queue.job_ids == [first.job_id, second.job_id]

    response = run_action(admin_client, "cancel_operations", first)

    assert response.status_code == 200
    assert row(first)["status"] == OperationStatus.CANCELLED
    assert row(second)["status"] == OperationStatus.QUEUED
    assert queue.job_ids == [second.job_id]
    assert Job.fetch(first.job_id, connection=queue.connection).get_status() == JobStatus.CANCELED
    assert messages_of(response) == ["Cancelled 1 operation."]
    history = LogEntry.objects.get(object_id=str(first.id))
    assert (history.action_flag, history.user.username) == (CHANGE, "admin")


def test_retry_of_a_failed_operation_queues_a_new_job_that_completes(admin_client, media, storage_root, run_worker):
    operation = create(media)
    input_path = storage_root / operation.files.get(file_type=FileType.INPUT).file_path
    moved = input_path.rename(input_path.with_suffix(".away"))
    run_worker("image_queue")  # the input is missing: the job fails for real
    failed = row(operation)
    assert failed["status"] == OperationStatus.FAILED
    moved.rename(input_path)

    response = run_action(admin_client, "retry_operations", operation)

    retried = row(operation)
    assert retried["status"] == OperationStatus.QUEUED
    assert retried["retry_count"] == failed["retry_count"] + 1
    assert retried["job_id"] != failed["job_id"]
    assert get_queue("image_queue").job_ids == [retried["job_id"]]
    assert messages_of(response) == ["Retried 1 operation."]

    run_worker("image_queue")
    assert row(operation)["status"] == OperationStatus.COMPLETED


def test_delete_asks_first_then_deletes_through_the_service_with_the_files(
    admin_client, media, storage_root, run_worker
):
    done = completed(media, run_worker)
    waiting = create(media)
    queue = get_queue("image_queue")
    assert {path.name for path in stored(storage_root)} == {"input.png", "output.png"}

    confirmation = run_action(admin_client, "delete_operations", done, waiting)

    assert confirmation.status_code == 200
    assert str(done.id) in confirmation.content.decode()
    assert not Operation.objects.filter(is_deleted=True).exists()  # only asked so far
    assert len(stored(storage_root)) == 3

    response = run_action(admin_client, "delete_operations", done, waiting, post="yes")

    assert messages_of(response) == ["Deleted 2 operations."]
    kept = {item["id"]: item for item in Operation.objects.values()}  # soft delete: the rows stay
    assert kept[done.id]["is_deleted"] and kept[done.id]["deleted_at"] is not None
    assert kept[done.id]["status"] == OperationStatus.COMPLETED
    assert kept[waiting.id]["is_deleted"] and kept[waiting.id]["status"] == OperationStatus.CANCELLED
    assert queue.job_ids == []
    assert Job.fetch(waiting.job_id, connection=queue.connection).get_status() == JobStatus.CANCELED
    assert stored(storage_root) == []


def test_the_delete_button_goes_through_the_service_with_the_files(admin_client, media, storage_root, run_worker):
    operation = completed(media, run_worker)

    confirmation = admin_client.get(delete_url(operation))
    assert confirmation.status_code == 200
    assert "photo.png" in confirmation.content.decode()
    assert len(stored(storage_root)) == 2

    response = admin_client.post(delete_url(operation), {"post": "yes"}, follow=True)

    assert response.redirect_chain == [(CHANGELIST, 302)]
    deleted = row(operation)
    assert deleted["is_deleted"] and deleted["deleted_at"] is not None
    assert stored(storage_root) == []
    # Nothing is left to delete: the button is gone and the row keeps its first delete's time.
    assert delete_url(operation) not in admin_client.get(change_url(operation)).content.decode()
    assert admin_client.post(delete_url(operation), {"post": "yes"}).status_code == 403
    assert row(operation)["deleted_at"] == deleted["deleted_at"]


# --- refusals ---------------------------------------------------------------------------------------
def test_cancel_of_a_completed_operation_is_refused_and_reported(admin_client, media, run_worker):
    done = completed(media, run_worker)
    waiting = create(media)
    before = row(done)

    response = run_action(admin_client, "cancel_operations", done, waiting)

    assert response.status_code == 200
    assert row(done) == before
    assert row(waiting)["status"] == OperationStatus.CANCELLED
    reported = messages_of(response)
    assert reported[0] == "Cancelled 1 operation."
    assert reported[1].startswith("1 of 2 operations could not be cancelled")
    assert str(done.id) in reported[2]
    assert "already completed" in reported[2]


def test_retry_of_a_queued_operation_is_refused_and_reported(admin_client, media):
    operation = create(media)
    before = row(operation)

    response = run_action(admin_client, "retry_operations", operation)

    assert row(operation) == before
    assert get_queue("image_queue").job_ids == [before["job_id"]]
    reported = messages_of(response)
    assert reported[0].startswith("1 of 1 operation could not be retried")
    assert str(operation.id) in reported[1]
    assert "failed or cancelled" in reported[1]


def test_delete_of_a_deleted_operation_is_refused_and_keeps_its_delete_time(admin_client, media):
    operation = create(media)
    operations_manager.operation_delete(operation=operation)
    before = row(operation)

    response = run_action(admin_client, "delete_operations", operation, post="yes")

    assert row(operation) == before
    reported = messages_of(response)
    assert reported[0].startswith("1 of 1 operation could not be deleted")
    assert str(operation.id) in reported[1]
    assert "already deleted" in reported[1]
