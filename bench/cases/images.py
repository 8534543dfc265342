"""Case 4: image_resize of a 24 MP JPEG into 1280×1280 and image_convert of a 12 MP PNG with alpha
to WebP, each processed as the worker processes it in a fresh process per sample, against Pillow
and pyvips doing the same."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.environment import Bench
from bench.harness import KONVRT, SERVICE_SHARE, Result, Sample, report_service_share
from bench.warm import REPO


def _vips_available() -> bool:
    try:
        import pyvips  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _run(bench: Bench, mode: str, source: Path, extension: str) -> Sample:
    output = bench.output_dir() / f"output.{extension}"
    started = time.perf_counter()
    answer = subprocess.run(
        [sys.executable, "-m", "bench.image_child", mode, str(source), str(output)],
        env=bench.env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    process_wall = time.perf_counter() - started
    if answer.returncode != 0:
        raise RuntimeError(f"{mode} failed: {answer.stderr[-2000:]}")
    figures = json.loads(answer.stdout.strip().splitlines()[-1])
    extra = {"work_rss_mb": figures["work_rss_mb"], "process_wall": process_wall}
    if SERVICE_SHARE in figures:
        extra[SERVICE_SHARE] = figures[SERVICE_SHARE]
    return Sample(wall=figures["wall"], peak_rss_mb=figures["peak_rss_mb"], extra=extra)


def _three_way(bench: Bench, kind: str, source: Path, extension: str) -> tuple[list[Sample], dict[str, list[Sample]]]:
    """Konvrt, Pillow and pyvips in rotating order (A B C, B C A, ...), one fresh process each."""
    anchors = ["pillow"] + (["vips"] if _vips_available() else [])
    tools = [KONVRT, *anchors]
    samples: dict[str, list[Sample]] = {tool: [] for tool in tools}
    for tool in tools:  # warm-up: the page cache and any one-off start-up cost
        _run(bench, f"{tool}-{kind}", source, extension)
    for index in range(bench.repeats):
        order = tools[index % len(tools) :] + tools[: index % len(tools)]
        for tool in order:
            samples[tool].append(_run(bench, f"{tool}-{kind}", source, extension))
    konvrt = samples.pop(KONVRT)
    return konvrt, samples


def _result(name: str, konvrt: list[Sample], anchors: dict[str, list[Sample]]) -> Result:
    medians = {tool: Result(case="", konvrt=found, baseline=[]).median(KONVRT) for tool, found in anchors.items()}
    faster = min(medians, key=medians.get)
    result = Result(case=name, konvrt=konvrt, baseline=anchors[faster])
    result.notes.append(
        "anchors: " + ", ".join(f"{tool} {seconds:.3f} s" for tool, seconds in medians.items()) + f" (faster: {faster})"
    )
    if "vips" not in anchors:
        result.notes.append("pyvips is not installed (see bench/requirements.txt): Pillow is the only anchor")
    return result


def run_images(bench: Bench) -> list[Result]:
    jpeg, png = bench.media.jpeg(), bench.media.png()
    width, height = bench.media.sizes.jpeg
    konvrt, anchors = _three_way(bench, "resize", jpeg, "jpg")
    resize = _result(f"image_resize {width * height / 1e6:.0f} MP JPEG → fit 1280", konvrt, anchors)
    resize.at_most("wall ratio ≤ 1.10 (faster anchor)", resize.ratio(), 1.10)
    resize.at_most("work RSS (peak − before) ≤ 64 MB", resize.median(KONVRT, "work_rss_mb"), 64.0)
    resize.report("whole-process peak RSS MB", resize.median(KONVRT, "peak_rss_mb"))
    report_service_share(resize)
    bench.clean_outputs()

    width, height = bench.media.sizes.png
    konvrt, anchors = _three_way(bench, "convert", png, "webp")
    convert = _result(f"image_convert {width * height / 1e6:.0f} MP PNG (alpha) → WebP", konvrt, anchors)
    convert.at_most("wall ratio ≤ 1.05 (faster anchor)", convert.ratio(), 1.05)
    convert.report("work RSS (peak − before) MB", convert.median(KONVRT, "work_rss_mb"))
    report_service_share(convert)
    bench.clean_outputs()
    return [resize, convert]
