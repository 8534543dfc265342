"""Run one image processor in a fresh process and report the memory its work took.

``python -m tests.processors.image_memory_child OPERATION PARAMETERS_JSON INPUT WORKSPACE`` prints
one JSON line: ``work_mb`` (the peak resident memory during the work above what the process held
just before it: the high-water mark is reset first) and ``error`` (the user's message, or null).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    operation, parameters, source, workspace = (
        sys.argv[1],
        json.loads(sys.argv[2]),
        Path(sys.argv[3]),
        Path(sys.argv[4]),
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    from django.utils.module_loading import import_string

    from apps.processors.contract import ProcessingContext
    from apps.processors.exceptions import ProcessingError
    from apps.processors.formats import MediaType, get_format
    from apps.processors.probe import probe_image
    from apps.processors.registry import get_operation

    extension = source.suffix.lstrip(".").lower()
    pillow_format = get_format(extension).pillow_format
    info = probe_image(source, allowed_formats=(pillow_format,))
    context = ProcessingContext(
        operation=operation,
        media_type=MediaType.IMAGE,
        parameters=parameters,
        input_path=source,
        input_extension=extension,
        input_format=pillow_format,
        input_info=info,
        workspace=workspace,
        deadline=time.monotonic() + 600,
    )
    processor = import_string(get_operation(operation).processor)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _status("VmRSS")
    error = None
    try:
        processor(context)
    except ProcessingError as e:
        error = e.user_message
    print(json.dumps({"work_mb": round(_status("VmHWM") - before, 1), "error": error}), flush=True)


if __name__ == "__main__":
    main()
