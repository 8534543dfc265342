"""Helpers for processors that run FFmpeg more than once (measure then encode, two-pass encodes).

A job reports one percentage however many FFmpeg runs it makes: each run is given a share of the
whole (``in_stage``), so the progress a client sees, and the ETA derived from it, moves once from 0
to 100 instead of restarting with every pass. Everything else a run does (the time limit, a cancel,
the stall watchdog, the record of its command for the output check) is the context's own
``run_ffmpeg``: these helpers only narrow the progress callback.
"""

from __future__ import annotations

import dataclasses

from apps.processors.contract import ProcessingContext


def in_stage(context: ProcessingContext, start: float, end: float) -> ProcessingContext:
    """The same context, with FFmpeg's 0-100 % for one run mapped onto ``start``-``end`` % of the
    job. The copy shares the context's list of FFmpeg runs."""
    report = context.report_progress

    def report_share(percent: float | None) -> bool:
        if percent is None:
            return report(None)
        return report(start + (end - start) * min(100.0, max(0.0, percent)) / 100)

    return dataclasses.replace(context, report_progress=report_share)
