"""The shared fixtures do what later tests rely on."""

from __future__ import annotations

import django_rq

from apps.processors.probe import probe_image, probe_media


def test_run_worker_processes_a_real_job_from_redis(run_worker, tmp_path):
    queue = django_rq.get_queue("image_queue")
    job = queue.enqueue("tests.jobs.write_marker", str(tmp_path / "marker"), "done")

    run_worker("image_queue")

    job.refresh()
    assert job.is_finished
    assert (tmp_path / "marker").read_text() == "done"


def test_redis_is_flushed_between_tests(redis_connection):
    assert redis_connection.dbsize() == 0


def test_media_factory_makes_every_sample_kind(media):
    assert probe_media(media.video()).audio is not None
    assert probe_media(media.video(audio=False)).audio is None
    assert probe_media(media.audio(extension="mp3")).audio.codec == "mp3"
    assert probe_image(media.png(), allowed_formats=("PNG",)).mode == "RGBA"
    assert probe_image(media.gif(frames=3), allowed_formats=("GIF",)).frames == 3
    assert probe_image(media.webp(), allowed_formats=("WEBP",)).format_name == "WEBP"
