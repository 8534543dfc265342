from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class OperationsConfig(AppConfig):
    name = "apps.operations"
    label = "operations"

    def ready(self) -> None:
        # The storage layout (and whitenoise's static root) must exist before Django's checks
        # look at FILE_UPLOAD_TEMP_DIR and before a SQLite database file is opened inside it.
        for directory in (
            Path(settings.STORAGE_ROOT) / "uploads",
            Path(settings.STORAGE_ROOT) / "outputs",
            Path(settings.TEMP_ROOT) / "jobs",
            Path(settings.FILE_UPLOAD_TEMP_DIR),
            Path(settings.STATIC_ROOT),
        ):
            directory.mkdir(parents=True, exist_ok=True)
