"""Prometheus metrics for the whole deployment (``GET /metrics``, docs/metrics.md).

Every figure is read at scrape time from what all processes share, the database and Redis, by
one custom collector: a counter kept in one web process's memory would show that process's share
only, and be lost at its restart. prometheus-client's metric families do the exposition.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from apps.core.exceptions import ServiceUnavailable
from apps.operations.enums import OperationStatus, WebhookOutcome, WebhookState
from apps.operations.models import Operation, WebhookAttempt, WebhookEvent
from apps.operations.selectors import queue_statistics
from apps.processors.registry import OPERATIONS

logger = logging.getLogger(__name__)

# Seconds from start to completion: from a second for a small image to an hour for a long video.
DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
QUEUE_STATES = ("queued", "started", "finished", "failed", "scheduled", "deferred")


class KonvrtCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield self._operations()
        yield from self._queues()
        yield self._durations()
        yield self._webhook_deliveries()
        yield self._storage_free()

    def _operations(self) -> Metric:
        # Every operation ever accepted, by its status now (deleted ones included: they happened).
        family = GaugeMetricFamily(
            "konvrt_operations_total", "Operations by operation and current status.", labels=["operation", "status"]
        )
        rows = Operation.objects.order_by().values_list("operation", "status").annotate(count=Count("id"))
        counts = {(operation, status): count for operation, status, count in rows}
        for operation in sorted(set(OPERATIONS) | {operation for operation, _ in counts}):
            for status in OperationStatus.values:
                family.add_metric([operation, status], counts.get((operation, status), 0))
        return family

    def _queues(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("konvrt_queue_jobs", "RQ jobs per queue and state.", labels=["queue", "state"])
        workers = GaugeMetricFamily("konvrt_workers", "Live RQ workers listening on each queue.", labels=["queue"])
        oldest = GaugeMetricFamily(
            "konvrt_oldest_queued_seconds",
            "Age of the oldest waiting work on each queue (0 when none waits).",
            labels=["queue"],
        )
        try:
            statistics = queue_statistics()
        except ServiceUnavailable:
            statistics = {}  # Redis down: the queue figures are absent rather than wrong
        for queue, figures in statistics.items():
            for state in QUEUE_STATES:
                jobs.add_metric([queue, state], figures[state])
            workers.add_metric([queue], figures["workers"])
        for queue, seconds in _oldest_waiting().items():
            oldest.add_metric([queue], seconds)
        return [jobs, workers, oldest]

    def _durations(self) -> Metric:
        family = HistogramMetricFamily(
            "konvrt_operation_duration_seconds",
            "Seconds from a worker's start to completion, of completed operations.",
            labels=["operation"],
        )
        duration = ExpressionWrapper(F("completed_at") - F("started_at"), output_field=DurationField())
        aggregates = {
            f"le_{index}": Count("id", filter=Q(duration__lte=timedelta(seconds=bound)))
            for index, bound in enumerate(DURATION_BUCKETS)
        }
        rows = (
            Operation.objects.filter(status=OperationStatus.COMPLETED, started_at__isnull=False)
            .annotate(duration=duration)
            .order_by()
            .values("operation")
            .annotate(count=Count("id"), total=Sum("duration"), **aggregates)
        )
        for row in rows:
            counts: dict[str, Any] = dict(row)  # the bucket keys are built, which the row's TypedDict cannot say
            buckets = [(str(bound), counts[f"le_{index}"]) for index, bound in enumerate(DURATION_BUCKETS)]
            buckets.append(("+Inf", row["count"]))
            total = row["total"].total_seconds() if row["total"] is not None else 0.0
            family.add_metric([row["operation"]], buckets, total)
        return family

    def _webhook_deliveries(self) -> Metric:
        family = CounterMetricFamily(
            "konvrt_webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered (2xx), rejected (another answer), unreachable (none).",
            labels=["outcome"],
        )
        rows = dict(WebhookAttempt.objects.order_by().values_list("outcome").annotate(count=Count("id")))
        for outcome in WebhookOutcome.values:
            family.add_metric([outcome], rows.get(outcome, 0))
        return family

    def _storage_free(self) -> Metric:
        family = GaugeMetricFamily("konvrt_storage_free_bytes", "Free bytes on the disk of the storage root.")
        try:
            family.add_metric([], shutil.disk_usage(settings.STORAGE_ROOT).free)
        except OSError as e:
            logger.warning("Could not read the free space of %s: %s", settings.STORAGE_ROOT, e)
        return family


def _oldest_waiting() -> dict[str, float]:
    """Per queue, the age of its oldest waiting work: queued operations (by ``queued_at``) and,
    for the webhook queue, deliveries that are due."""
    now = timezone.now()
    ages = {worker["queue"]: 0.0 for worker in settings.WORKER_CONFIG.values()}
    rows = (
        Operation.objects.filter(status=OperationStatus.QUEUED, is_deleted=False, queued_at__isnull=False)
        .order_by()
        .values_list("operation")
        .annotate(oldest=Min("queued_at"))
    )
    for name, oldest in rows:
        definition = OPERATIONS.get(name)
        if definition is not None and definition.queue in ages:
            ages[definition.queue] = max(ages[definition.queue], (now - oldest).total_seconds())
    due = WebhookEvent.objects.filter(state=WebhookState.PENDING, next_attempt_at__lte=now).aggregate(
        oldest=Min("next_attempt_at")
    )["oldest"]
    if due is not None and "webhook_queue" in ages:
        ages["webhook_queue"] = (now - due).total_seconds()
    return ages


def metrics_registry() -> CollectorRegistry:
    """A registry holding only Konvrt's collector (not the process's own default metrics, which
    would describe one web process, not the deployment)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KonvrtCollector())
    return registry
