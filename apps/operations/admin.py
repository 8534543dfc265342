"""The admin: a read-only window on operations and their files, with cancel, retry and delete as
actions that go through the same services as the API.

Nothing is added or edited here. Every field of an operation belongs to its lifecycle or to its
user (the session, the parameters a retry would run with), and a model save from a form would
also write back every column as it was read at the start of the request, undoing a worker's
progress or a cancel made meanwhile. Status changes therefore happen only through
``operations_manager``: guarded transitions, the queued job withdrawn, stored files removed after
commit, and a refusal (cancelling a completed operation) reported for its row instead of forced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.core.exceptions import Expired, InvalidState
from apps.operations.models import File, Operation
from apps.operations.services import operations_manager

# What an action does to one operation: ``None`` when done, else why it was refused. The
# services' own refusals (InvalidState, Expired) are caught around it.
RowAction = Callable[[Operation], str | None]


def _cancel(operation: Operation) -> str | None:
    operations_manager.operation_cancel(operation=operation)
    return None


def _retry(operation: Operation) -> str | None:
    operations_manager.operation_retry(operation=operation)
    return None


def _delete(operation: Operation) -> str | None:
    if not operations_manager.operation_delete(operation=operation):
        return "It was already deleted."
    return None


def _count(number: int) -> str:
    return f"{number} operation" if number == 1 else f"{number} operations"


OWNER_FIELDS = ("id", "operation", "parameters", "session_key", "idempotency_key")
LIFECYCLE_FIELDS = ("status", "phase", "progress", "error_message", "job_id", "attempt", "retry_count")
TIME_FIELDS = (
    "created_at",
    "queued_at",
    "started_at",
    "heartbeat_at",
    "completed_at",
    "expires_at",
    "is_deleted",
    "deleted_at",
)


class ReadOnlyAdminMixin:
    """Neither add nor change: rows are only viewed (with the view or change permission)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FileInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = File
    extra = 0
    fields = ("file_type", "file_name", "file_path", "file_size", "mime_type", "metadata", "created_at")
    readonly_fields = fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "operation", "status", "progress", "created_at", "completed_at", "is_deleted")
    list_filter = ("status", "operation", "is_deleted")
    search_fields = ("id", "session_key", "job_id")
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": OWNER_FIELDS}),
        ("Lifecycle", {"fields": LIFECYCLE_FIELDS}),
        ("Times", {"fields": TIME_FIELDS}),
        ("For operators", {"fields": ("metadata",)}),
    )
    # Read-only twice over: should the change permission ever come back, the form still has no field.
    readonly_fields = OWNER_FIELDS + LIFECYCLE_FIELDS + TIME_FIELDS + ("metadata",)
    inlines = [FileInline]
    actions = ["cancel_operations", "retry_operations", "delete_operations"]
    delete_confirmation_template = "admin/operations/operation/delete_with_files_confirmation.html"

    # --- permissions ------------------------------------------------------------------------
    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Cancel and retry: for users who hold the model's change permission, which here moves an
        operation through its services rather than editing its row."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def has_delete_permission(self, request: HttpRequest, obj: Operation | None = None) -> bool:
        # A deleted row stays listed, but there is nothing left to delete.
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.is_deleted)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Django's bulk delete removes rows and leaves their stored files behind.
        actions.pop("delete_selected", None)
        return actions

    # --- actions ----------------------------------------------------------------------------
    @admin.action(description="Cancel selected operations", permissions=["operate"])
    def cancel_operations(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        self._apply(request, queryset, _cancel, done="Cancelled", participle="cancelled")

    @admin.action(description="Retry selected operations", permissions=["operate"])
    def retry_operations(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        self._apply(request, queryset, _retry, done="Retried", participle="retried")

    @admin.action(description="Delete selected operations with their files", permissions=["delete"])
    def delete_operations(self, request: HttpRequest, queryset: QuerySet[Operation]) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            return self._confirm_delete(request, list(queryset.prefetch_related("files")), bulk=True)
        self._apply(request, queryset, _delete, done="Deleted", participle="deleted")
        return None

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The per-object delete, through the delete service like the action, never a row delete."""
        operation = self.get_object(request, unquote(object_id))
        if operation is None:
            raise Http404("No such operation.")
        if not self.has_delete_permission(request, operation):
            raise PermissionDenied
        if request.method == "POST":
            self._apply(
                request, Operation.objects.filter(pk=operation.pk), _delete, done="Deleted", participle="deleted"
            )
            return HttpResponseRedirect(reverse("admin:operations_operation_changelist"))
        return self._confirm_delete(request, [operation], bulk=False)

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[Operation], act: RowAction, *, done: str, participle: str
    ) -> None:
        """Run ``act`` on each operation in a transaction of its own, so that each row's after-commit
        work (withdrawing a job, queueing, removing files) happens as that row is done; then report
        what happened: a count of the rows done, and each refused row with the service's reason."""
        succeeded = 0
        refusals: list[tuple[Operation, str]] = []
        for operation in queryset.prefetch_related("files"):
            try:
                with transaction.atomic():
                    refusal = act(operation)
            except (InvalidState, Expired) as e:
                refusal = e.message
            if refusal is not None:
                refusals.append((operation, refusal))
                continue
            succeeded += 1
            # A change, also for a delete: the row stays, and so does its history page.
            self.log_change(request, operation, f"{done} through the admin.")
        if succeeded:
            self.message_user(request, f"{done} {_count(succeeded)}.", messages.SUCCESS)
        if refusals:
            total = succeeded + len(refusals)
            self.message_user(
                request, f"{len(refusals)} of {_count(total)} could not be {participle}:", messages.WARNING
            )
        for operation, reason in refusals:
            self.message_user(request, f"{operation}: {reason}", messages.WARNING)

    def _confirm_delete(self, request: HttpRequest, operations: list[Operation], *, bulk: bool) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete operations with their files" if bulk else "Delete this operation with its files",
            "opts": self.opts,
            "operations": operations,
            # The bulk form posts back to the changelist's action, the per-object one to its own URL.
            "action_name": "delete_operations" if bulk else None,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.delete_confirmation_template, context)


@admin.register(File)
class FileAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "operation", "file_type", "file_name", "file_size", "mime_type", "created_at")
    list_filter = ("file_type",)
    search_fields = ("id", "file_name", "operation__id")
    fields = (
        "id",
        "operation",
        "file_type",
        "file_name",
        "file_path",
        "file_size",
        "mime_type",
        "cloudinary_public_id",
        "cloudinary_url",
        "metadata",
        "created_at",
    )
    readonly_fields = fields

    def has_delete_permission(self, request: HttpRequest, obj: File | None = None) -> bool:
        # A file goes with its operation, through the operation's delete.
        return False
