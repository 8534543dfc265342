from django.contrib import admin

from apps.operations.models import File, Operation


class FileInline(admin.TabularInline):
    model = File
    extra = 0
    readonly_fields = ("file_type", "file_name", "file_path", "file_size", "mime_type", "metadata", "created_at")
    can_delete = False


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ("id", "operation", "status", "progress", "created_at", "completed_at", "is_deleted")
    list_filter = ("status", "operation", "is_deleted")
    search_fields = ("id", "session_key", "job_id")
    readonly_fields = ("id", "created_at", "started_at", "completed_at", "queued_at", "heartbeat_at", "attempt")
    date_hierarchy = "created_at"
    inlines = [FileInline]


@admin.register(File)
class FileAdmin(admin.ModelAdmin):
    list_display = ("id", "operation", "file_type", "file_name", "file_size", "mime_type", "created_at")
    list_filter = ("file_type",)
    search_fields = ("id", "file_name", "operation__id")
    raw_id_fields = ("operation",)
