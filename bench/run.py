"""``make bench``: every case, interleaved with its baseline, a table of medians and a JSON file.

    python -m bench [--quick] [--cases video,audio,...] [--repeats N] [--output PATH]

Needs PostgreSQL (DATABASE_URL; the database is created and migrated when missing) and a Redis
database of its own (REDIS_URL; **flushed** at the start). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.warm import REPO

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/konvrt_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEFAULT_OTHER_FFMPEG = "/usr/bin/ffmpeg"
CASES = (
    "video",
    "audio",
    "image",
    "operations",
    "progress",
    "builds",
    "e2e",
    "queue",
    "status",
    "upload",
    "tus",
    "url",
    "webhooks",
    "sse",
)


def run_cases(bench, cases: tuple[str, ...], *, log: Callable[[str], None] = print) -> list:
    """Run the named cases on ``bench`` (an ``environment.Bench``) in a sensible order."""
    from bench.cases import images, integrations, operations, processing, service, uploads

    results = []
    steps: list[tuple[str, Callable[[], list]]] = [
        ("video", lambda: processing.run_video(bench)),
        ("audio", lambda: processing.run_audio(bench)),
        ("image", lambda: images.run_images(bench)),
        ("operations", lambda: operations.run_operations(bench)),
        ("progress", lambda: service.run_progress(bench)),
        ("builds", lambda: processing.run_ffmpeg_builds(bench)),
        ("queue", lambda: service.run_queue(bench)),
        ("upload", lambda: service.run_upload(bench)),
        ("tus", lambda: uploads.run_tus(bench)),
        ("url", lambda: uploads.run_url_import(bench)),
        ("webhooks", lambda: integrations.run_webhooks(bench)),
        ("sse", lambda: integrations.run_sse(bench)),
    ]
    for name, step in steps:
        if name in cases:
            results += _timed(name, step, log)
    served = [name for name in ("e2e", "status") if name in cases]
    if served:
        web = bench.start_web()
        try:
            if "e2e" in cases:
                results += _timed("e2e", lambda: service.run_end_to_end(bench, web), log)
            if "status" in cases:
                results += _timed("status", lambda: service.run_status(bench, web), log)
        finally:
            web.stop()
    return results


def _timed(name: str, step: Callable[[], list], log: Callable[[str], None]) -> list:
    started = time.monotonic()
    log(f"[bench] {name} ...")
    found = step()
    log(f"[bench] {name} done in {time.monotonic() - started:.0f} s")
    return found


def _prepare_database(url: str) -> None:
    """Create the bench's database when missing, then migrate it."""
    import psycopg
    from django.core.management import call_command

    if url.startswith(("postgres://", "postgresql://")):
        base, _, name = url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0, interactive=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of: {', '.join(CASES)}")
    parser.add_argument("--scale", choices=("full", "quick", "smoke"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=None, help="A/B pairs per case (default 2)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "results" / "work")
    parser.add_argument(
        "--other-ffmpeg",
        default=os.environ.get("BENCH_OTHER_FFMPEG", DEFAULT_OTHER_FFMPEG),
        help="another FFmpeg build to compare per codec (default /usr/bin/ffmpeg, skipped when missing)",
    )
    options = parser.parse_args(argv)
    cases = tuple(name.strip() for name in options.cases.split(",") if name.strip())
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    storage_root = options.work / "storage"
    from bench.environment import Bench

    bench = Bench(
        work=options.work,
        storage_root=storage_root,
        database_url=os.environ["DATABASE_URL"],
        redis_url=os.environ["REDIS_URL"],
        scale=options.scale or ("quick" if options.quick else "full"),
        repeats=options.repeats or 2,
    )
    # This process is a Konvrt process too (it creates operations, enqueues, probes).
    os.environ.update({k: v for k, v in bench.env().items() if k not in ("PYTHONPATH",)})
    import django

    django.setup()
    _prepare_database(bench.database_url)
    import django_rq

    django_rq.get_connection("video_queue").flushdb()

    from apps.processors.ffmpeg import resolve_ffmpeg_binary

    other = options.other_ffmpeg
    if other and Path(other).is_file() and Path(other).resolve() != Path(resolve_ffmpeg_binary()).resolve():
        bench.other_ffmpeg = other
    elif "builds" in cases:
        bench.notes.append(
            f"FFmpeg build comparison skipped: no other FFmpeg at {other!r} "
            "(apt-get install ffmpeg, or --other-ffmpeg PATH)"
        )
    from bench.harness import format_table, write_json

    print(f"[bench] FFmpeg: {resolve_ffmpeg_binary()}; database {bench.database_url}; Redis {bench.redis_url}")
    print(f"[bench] load average before: {os.getloadavg()[0]:.2f}")
    results = run_cases(bench, cases)
    print()
    print(format_table(results))
    for note in bench.notes:
        print(f"note: {note}")
    write_json(
        results,
        options.output,
        options={"scale": bench.scale, "repeats": bench.repeats, "cases": list(cases), "notes": bench.notes},
    )
    print(f"\n[bench] wrote {options.output}")
    shutil.rmtree(storage_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
