"""One image operation in a fresh process, so that its peak memory is its own.

``python -m bench.image_child MODE INPUT OUTPUT`` prints one JSON line: the operation's wall time
(timed inside, after the imports), the process's resident memory before it and its peak (VmHWM)
after. MODE is ``konvrt-resize``, ``konvrt-convert`` (the registry's processor with a real
ProcessingContext), ``pillow-resize``, ``pillow-convert``, ``vips-resize`` or ``vips-convert``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench.procfs import peak_rss_mb, rss_mb

FIT = 1280
RESIZE_QUALITY = 90  # image_resize's JPEG quality
WEBP_QUALITY = 85  # image_convert's default
WEBP_METHOD = 4  # Konvrt's WebP effort


def konvrt(operation: str, source: Path, output: Path):
    import django

    django.setup()
    from apps.core.utils import file_extension
    from apps.processors.contract import ProcessingContext
    from apps.processors.inspection import input_decoder, inspect_input
    from apps.processors.parameters import validate_parameters
    from apps.processors.registry import get_operation

    definition = get_operation(operation)
    parameters = {"width": FIT, "height": FIT} if operation == "image_resize" else {"output_format": "webp"}

    def run() -> None:
        extension = file_extension(source.name)
        decoder = input_decoder(extension=extension, media_type=definition.media_type, recorded=None)
        context = ProcessingContext(
            operation=definition.name,
            media_type=definition.media_type,
            parameters=validate_parameters(definition, parameters),
            input_path=source,
            input_extension=extension,
            input_format=decoder,
            input_info=inspect_input(path=source, extension=extension, definition=definition, input_format=decoder),
            workspace=output.parent,
            deadline=time.monotonic() + definition.timeout,
        )
        definition.load_processor()(context)

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
        work = konvrt("image_resize" if kind == "resize" else "image_convert", source, output)
    elif tool == "pillow":
        work = pillow(kind, source, output)
    else:
        work = vips(kind, source, output)
    pid = os.getpid()
    before = rss_mb(pid)
    started = time.perf_counter()
    work()
    wall = time.perf_counter() - started
    peak = peak_rss_mb(pid)
    print(json.dumps({"wall": wall, "rss_before_mb": before, "peak_rss_mb": peak, "work_rss_mb": peak - before}))


if __name__ == "__main__":
    main()
