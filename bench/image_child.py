"""One image operation in a fresh process, so that its peak memory is its own.

``python -m bench.image_child MODE INPUT OUTPUT`` prints one JSON line: the operation's wall time
(timed inside, after the imports), the process's resident memory before it and its peak (VmHWM)
after, and for Konvrt the service's time around the processor. MODE is ``konvrt-resize`` or
``konvrt-convert`` (a claimed operation through the processing service, as the worker runs it:
see ``bench.inside.process``; its output goes to storage, not to OUTPUT), ``pillow-resize``,
``pillow-convert``, ``vips-resize`` or ``vips-convert``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench.harness import SERVICE_SHARE
from bench.procfs import peak_rss_mb, rss_mb

FIT = 1280
RESIZE_QUALITY = 90  # image_resize's JPEG quality
WEBP_QUALITY = 85  # image_convert's default
WEBP_METHOD = 4  # Konvrt's WebP effort


def konvrt(operation: str, source: Path):
    import django

    django.setup()
    from bench.inside import claimed_operation, process

    parameters = {"width": FIT, "height": FIT} if operation == "image_resize" else {"output_format": "webp"}
    # Stored and claimed before the clock starts, as the API and the claim happen before the job.
    claimed = claimed_operation(operation=operation, parameters=parameters, input_path=str(source))

    def run() -> dict[str, float]:
        started = time.perf_counter()
        outcome = process(claimed)
        return {SERVICE_SHARE: (time.perf_counter() - started - outcome.processor_seconds) * 1000}

    return run


def pillow(kind: str, source: Path, output: Path):
    from PIL import Image

    def resize() -> None:
        with Image.open(source) as image:
            scale = min(FIT / image.width, FIT / image.height)
            size = (round(image.width * scale), round(image.height * scale))
            image.draft("RGB", size)
            image.resize(size, Image.Resampling.LANCZOS).save(output, "JPEG", quality=RESIZE_QUALITY)

    def convert() -> None:
        with Image.open(source) as image:
            image.save(output, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)

    return resize if kind == "resize" else convert


def vips(kind: str, source: Path, output: Path):
    import pyvips

    def resize() -> None:
        pyvips.Image.thumbnail(str(source), FIT, height=FIT).jpegsave(str(output), Q=RESIZE_QUALITY)

    def convert() -> None:
        image = pyvips.Image.new_from_file(str(source), access="sequential")
        image.webpsave(str(output), Q=WEBP_QUALITY, effort=WEBP_METHOD)

    return resize if kind == "resize" else convert


def main() -> None:
    mode, source, output = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    tool, kind = mode.split("-")
    if tool == "konvrt":
        work = konvrt("image_resize" if kind == "resize" else "image_convert", source)
    elif tool == "pillow":
        work = pillow(kind, source, output)
    else:
        work = vips(kind, source, output)
    pid = os.getpid()
    before = rss_mb(pid)
    started = time.perf_counter()
    figures = work() or {}
    wall = time.perf_counter() - started
    peak = peak_rss_mb(pid)
    figures.update(wall=wall, rss_before_mb=before, peak_rss_mb=peak, work_rss_mb=peak - before)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
