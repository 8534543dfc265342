"""Import from a URL: the worker's fetching phase, through the outbound guard, against a local source
server (127.0.0.2, allowed by OUTBOUND_ALLOWED_NETWORKS) and a victim on 127.0.0.1 that must never
be reached."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.operations.models import Operation
from tests.http_servers import RecordingServer, Route

API = "/api/v1"

pytestmark = pytest.mark.django_db(transaction=True)  # the API queues on commit


@pytest.fixture
def source(settings) -> Iterator[RecordingServer]:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    server = RecordingServer("127.0.0.2")
    yield server
    server.close()


@pytest.fixture
def victim() -> Iterator[RecordingServer]:
    server = RecordingServer("127.0.0.1", {"/": Route(200, body=b"internal")})
    yield server
    server.close()


def import_from(client, url: str, operation: str = "image_resize", parameters: str = '{"width": 8}') -> Operation:
    response = client.post(f"{API}/operations/", {"operation": operation, "parameters": parameters, "source_url": url})
    assert response.status_code == 201, response.json()
    return Operation.objects.get(id=response.json()["data"]["id"])


def test_a_file_at_a_url_is_fetched_checked_and_processed(client, media, run_worker, source):
    source.routes["/pictures/cat%20photo.png"] = Route(200, {"Content-Type": "image/png"}, media.png().read_bytes())

    operation = import_from(client, source.url("/pictures/cat%20photo.png?size=large"))
    run_worker()

    operation.refresh_from_db()
    assert operation.status == "completed", operation.error_message
    input_file = operation.files.get(file_type="input")
    assert input_file.file_name == "cat photo.png"
    assert input_file.file_size == media.png().stat().st_size
    assert input_file.metadata["source_url"] == source.url("/pictures/cat%20photo.png?size=large")
    assert source.requests[0].headers["User-Agent"] == "Konvrt URL import"


def test_the_name_comes_from_content_disposition_and_redirects_are_followed(client, media, run_worker, source):
    source.routes["/share/123"] = Route(302, {"Location": "/files/abc"})
    source.routes["/files/abc"] = Route(
        200, {"Content-Disposition": "attachment; filename*=UTF-8''%C3%A9t%C3%A9.png"}, media.png().read_bytes()
    )

    operation = import_from(client, source.url("/share/123"))
    run_worker()

    operation.refresh_from_db()
    assert operation.status == "completed", operation.error_message
    assert operation.files.get(file_type="input").file_name == "été.png"


def test_a_name_without_an_extension_gets_the_sniffed_one(client, media, run_worker, source):
    source.routes["/download"] = Route(200, body=media.png().read_bytes())

    operation = import_from(client, source.url("/download"))
    run_worker()

    operation.refresh_from_db()
    assert operation.files.get(file_type="input").file_name == "download.png"


def test_a_404_fails_with_a_sentence_naming_the_server(client, run_worker, source):
    operation = import_from(client, source.url("/missing.png"))
    run_worker()

    operation.refresh_from_db()
    assert operation.status == "failed"
    assert operation.error_message == (
        "The server at 127.0.0.2 answered 404 (not found) instead of the file. "
        "Check the address: the file is not there."
    )
    assert not operation.files.exists()


def test_a_file_over_the_operations_limit_fails_without_being_kept(client, run_worker, source, settings, storage_root):
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": 1024 * 1024}
    source.routes["/huge.png"] = Route(200, body=b"\x89PNG" + b"\0" * (2 * 1024 * 1024), no_length=True)

    operation = import_from(client, source.url("/huge.png"))
    run_worker()

    operation.refresh_from_db()
    assert operation.status == "failed"
    assert operation.error_message == "The file at that address is larger than 1 MB."
    assert list((storage_root / "uploads").iterdir()) == []


def test_content_that_is_not_the_media_asked_for_fails_with_the_upload_check_sentence(client, run_worker, source):
    source.routes["/page.png"] = Route(200, {"Content-Type": "text/html"}, b"<html><body>Sign in</body></html>")

    operation = import_from(client, source.url("/page.png"))
    run_worker()

    operation.refresh_from_db()
    assert operation.status == "failed"
    assert "image" in operation.error_message.lower()
    assert not operation.files.exists()


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{victim}/",
        "http://localhost:{victim}/",
        "http://[::ffff:127.0.0.1]:{victim}/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_redirect_into_a_private_address_at_fetch_time_fails_without_reaching_it(
    client, run_worker, source, victim, location
):
    source.routes["/a.png"] = Route(302, {"Location": location.format(victim=victim.port)})

    operation = import_from(client, source.url("/a.png"))
    run_worker()

    operation.refresh_from_db()
    assert operation.status == "failed"
    assert operation.error_message.startswith("Konvrt may not send requests to")
    assert victim.connections == 0


def test_too_many_redirects_fail_with_a_sentence(client, run_worker, source):
    source.routes["/loop"] = Route(302, {"Location": "/loop"})

    operation = import_from(client, source.url("/loop"))
    run_worker()

    operation.refresh_from_db()
    assert operation.error_message == "The address redirected more than 5 times."
    assert len(source.requests) == 6


def test_a_slow_source_fails_at_the_import_timeout(client, media, run_worker, source, settings):
    settings.URL_IMPORT_TIMEOUT = 1
    source.routes["/slow.png"] = Route(200, body=media.png().read_bytes() * 20, drip_seconds=0.3)

    operation = import_from(client, source.url("/slow.png"))
    run_worker()

    operation.refresh_from_db()
    assert operation.status == "failed"
    assert operation.error_message == "The server at 127.0.0.2 did not answer within 1 seconds."


def test_a_failed_import_can_be_retried_and_fetches_again(client, media, run_worker, source):
    operation = import_from(client, source.url("/later.png"))
    run_worker()
    operation.refresh_from_db()
    assert operation.status == "failed"

    source.routes["/later.png"] = Route(200, body=media.png().read_bytes())
    assert client.post(f"{API}/operations/{operation.id}/retry/").status_code == 200
    run_worker()

    operation.refresh_from_db()
    assert operation.status == "completed", operation.error_message
    assert [seen.path for seen in source.requests] == ["/later.png", "/later.png"]


def test_the_phase_is_fetching_while_the_worker_downloads(client, media, run_worker, source):
    import threading

    from django.db import connection

    source.routes["/slow.png"] = Route(200, body=media.png().read_bytes() + b"\0" * 20_000, drip_seconds=0.05)
    operation = import_from(client, source.url("/slow.png"))
    phases: set[str | None] = set()
    done = threading.Event()

    def poll() -> None:
        # The worker runs in this test's main thread (RQ installs signal handlers); the poller beside it.
        while not done.wait(0.05):
            phases.add(Operation.objects.filter(id=operation.id).values_list("phase", flat=True).first())
        connection.close()

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        run_worker()
    finally:
        done.set()
        poller.join(10)

    assert "fetching" in phases
    operation.refresh_from_db()
    assert operation.status == "completed", operation.error_message
