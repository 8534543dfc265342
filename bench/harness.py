"""Interleaved A/B measurement: each case runs Konvrt and its baseline alternately, several times,
in the same run, and reports medians, ratios and peak memory against its targets.

Ratios of medians from interleaved runs tolerate a loaded machine: drift (other processes, thermal
throttling, a cold cache) hits both sides alike, where two separate runs would compare two machines.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KONVRT = "konvrt"
BASELINE = "baseline"
# A processing sample's extra figure: the processing service's own time around the processor
# (fetching, probing, verifying, storing, status writes), in ms.
SERVICE_SHARE = "around_processor_ms"


@dataclass
class Sample:
    """One measured run. ``extra`` carries case-specific figures (throughput, p99, writes...)."""

    wall: float
    cpu: float = 0.0
    peak_rss_mb: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        if metric in ("wall", "cpu", "peak_rss_mb"):
            return getattr(self, metric)
        return self.extra[metric]


@dataclass
class Check:
    """One target: ``value`` against ``limit``. ``passed`` is None for a figure that is only reported."""

    label: str
    value: float
    limit: float | None
    passed: bool | None

    def describe(self) -> str:
        verdict = {True: "PASS", False: "MISS", None: "info"}[self.passed]
        return f"{self.label}: {_number(self.value)} [{verdict}]"


@dataclass
class Result:
    case: str
    konvrt: list[Sample]
    baseline: list[Sample]
    metric: str = "wall"
    unit: str = "s"
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def values(self, side: str, metric: str | None = None) -> list[float]:
        samples = self.konvrt if side == KONVRT else self.baseline
        return [sample.value(metric or self.metric) for sample in samples]

    def median(self, side: str, metric: str | None = None) -> float:
        values = self.values(side, metric)
        return statistics.median(values) if values else math.nan

    def ratio(self, metric: str | None = None) -> float:
        base = self.median(BASELINE, metric)
        return self.median(KONVRT, metric) / base if base else math.nan

    def peak_rss(self, side: str) -> float:
        samples = self.konvrt if side == KONVRT else self.baseline
        return max((sample.peak_rss_mb for sample in samples), default=0.0)

    def at_most(self, label: str, value: float, limit: float) -> Check:
        """Record a target that ``value`` must not exceed (a NaN never passes)."""
        check = Check(label=label, value=value, limit=limit, passed=bool(value <= limit))
        self.checks.append(check)
        return check

    def at_least(self, label: str, value: float, limit: float) -> Check:
        check = Check(label=label, value=value, limit=limit, passed=bool(value >= limit))
        self.checks.append(check)
        return check

    def report(self, label: str, value: float) -> Check:
        """A figure shown with the result but judged against nothing."""
        check = Check(label=label, value=value, limit=None, passed=None)
        self.checks.append(check)
        return check

    @property
    def passed(self) -> bool | None:
        verdicts = [check.passed for check in self.checks if check.passed is not None]
        return all(verdicts) if verdicts else None

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "case": self.case,
            "metric": self.metric,
            "unit": self.unit,
            "konvrt_median": self.median(KONVRT),
            "baseline_median": self.median(BASELINE),
            "ratio": self.ratio(),
            "konvrt_peak_rss_mb": self.peak_rss(KONVRT),
            "baseline_peak_rss_mb": self.peak_rss(BASELINE),
            "passed": self.passed,
            "checks": [asdict(check) for check in self.checks],
            "notes": self.notes,
            "konvrt_samples": [asdict(sample) for sample in self.konvrt],
            "baseline_samples": [asdict(sample) for sample in self.baseline],
        }
        for side, samples in ((KONVRT, self.konvrt), (BASELINE, self.baseline)):
            if samples and samples[0].extra:
                data[f"{side}_extra"] = {key: self.median(side, key) for key in samples[0].extra}
        return data


def interleave(
    konvrt: Callable[[], Sample], baseline: Callable[[], Sample], *, repeats: int, warmup: bool = True
) -> tuple[list[Sample], list[Sample]]:
    """A B A B ...: drift of the machine (thermal, other load) hits both sides alike."""
    if warmup:
        baseline()
        konvrt()
    ours: list[Sample] = []
    theirs: list[Sample] = []
    for index in range(repeats):
        # Alternate who goes first, so neither side always runs on a warmer cache.
        if index % 2 == 0:
            ours.append(konvrt())
            theirs.append(baseline())
        else:
            theirs.append(baseline())
            ours.append(konvrt())
    return ours, theirs


def report_service_share(result: Result) -> None:
    """Show how much of Konvrt's time was the processing service's own, around the processor."""
    result.report("of which the service around the processor (ms)", result.median(KONVRT, SERVICE_SHARE))


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.95 → p95) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def measure_command(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Sample:
    """Run a command to completion: wall time, CPU (user+sys of it and its children) and peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 gives this child's own resource usage, whatever other children this process has.
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {process.returncode}: {stderr.decode(errors='replace')[-2000:]}")
    return Sample(wall=wall, cpu=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024)


def machine_description() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count()),
        "system": f"{platform.system()} {platform.release()}",
        "load_average_1min": f"{os.getloadavg()[0]:.2f}",
    }


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.3f}"
    return f"{value:.5f}"


def format_table(results: list[Result]) -> str:
    header = f"{'case':46} {'konvrt':>10} {'baseline':>10} {'ratio':>7} {'RSS K/B MB':>11}  verdict"
    lines = [header, "-" * len(header)]
    for result in results:
        unit = result.unit
        ours, theirs = result.median(KONVRT), result.median(BASELINE)
        rss = f"{result.peak_rss(KONVRT):.0f}/{result.peak_rss(BASELINE):.0f}"
        verdict = {True: "PASS", False: "MISS", None: "info"}[result.passed]
        lines.append(
            f"{result.case[:46]:46} {_number(ours):>8}{unit:>2} {_number(theirs):>8}{unit:>2} "
            f"{_number(result.ratio()):>7} {rss:>11}  {verdict}"
        )
        for check in result.checks:
            lines.append(f"{'':6}{check.describe()}")
        for note in result.notes:
            lines.append(f"{'':6}note: {note}")
    return "\n".join(lines)


def write_json(results: list[Result], path: Path, *, options: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine_description(),
        "options": options,
        "passed": all(result.passed is not False for result in results),
        "results": [result.summary() for result in results],
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
