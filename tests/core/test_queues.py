"""Queues on connections a process keeps: no new connection pool per call."""

from __future__ import annotations

import os

from apps.core.queues import get_connection, get_queue


def test_every_queue_call_reuses_the_process_connection(settings):
    first, second = get_queue("video_queue"), get_queue("image_queue")

    assert first.connection is second.connection is get_connection("audio_queue")
    first.connection.ping()
    assert first.connection.connection_pool.pid == os.getpid()


def test_a_queue_configured_elsewhere_gets_its_own_connection(settings):
    default = get_connection("video_queue")
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "video_queue": {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 60}}

    moved = get_queue("video_queue")

    assert moved.connection is not default
    assert moved.connection.connection_pool.connection_kwargs["port"] == 1
