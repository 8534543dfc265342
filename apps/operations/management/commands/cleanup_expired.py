"""``manage.py cleanup_expired``: one retention pass now, for operators (the same pass RQ cron runs hourly)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.operations.services.cleanup import DEFAULT_LIMIT, cleanup_run

LINES = (
    ("expired_operations", "expired operations whose files were removed"),
    ("deleted_operations", "deleted operations whose leftover files were removed"),
    ("stored_files_removed", "stored files removed"),
    ("job_workspaces_removed", "abandoned job workspaces removed"),
    ("upload_temp_files_removed", "stale upload temp files removed"),
    ("orphaned_folders_removed", "orphaned storage folders removed"),
    ("expired_uploads_removed", "expired resumable uploads removed"),
)


class Command(BaseCommand):
    help = (
        "Delete expired operations' files from storage and mark them, remove files left by deleted operations, "
        "orphaned temp directories and uploads, and expired sessions. Safe to run while the periodic job runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit",
            type=int,
            default=DEFAULT_LIMIT,
            help=f"Operations to handle in this run at most (default {DEFAULT_LIMIT}); run again for the rest.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        report = cleanup_run(limit=options["limit"])
        for field, label in LINES:
            self.stdout.write(f"{getattr(report, field):>6}  {label}")
        self.stdout.write(
            "   yes  expired sessions cleared"
            if report.expired_sessions_cleared
            else "    no  sessions expire by themselves"
        )
        if report.failed_operations:
            # Non-zero exit, so that an operator's scheduler or monitoring notices.
            raise CommandError(
                f"The files of {report.failed_operations} operation(s) could not be removed; "
                "see the log. They are kept and tried again on the next run."
            )
        self.stdout.write(self.style.SUCCESS("Cleanup finished."))
