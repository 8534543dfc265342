"""Local downloads honour Range through the Procfile's web server, so that players can seek."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.message import Message

import pytest

from apps.operations.enums import FileType, OperationStatus
from tests.serving.conftest import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def fetch(url: str, headers: dict[str, str]) -> tuple[int, Message, bytes]:
    """Status, headers (looked up without regard to case, as HTTP wants) and body."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture
def download(web_server: WebServer, served_storage, api_session: str, make_operation):
    operation = make_operation(api_session, status=OperationStatus.COMPLETED, name="clip.mov")
    output = operation.files.get(file_type=FileType.OUTPUT)
    content = (served_storage / output.file_path).read_bytes()
    assert len(content) > 1000
    url = f"{web_server.base}/api/v1/operations/{operation.id}/download/"

    def get(**headers: str) -> tuple[int, Message, bytes]:
        return fetch(url, {"X-Session-Key": api_session, **headers})

    return get, content


def test_a_whole_download_says_it_accepts_ranges(download):
    get, content = download
    status, headers, body = get()

    assert status == 200
    assert headers["Accept-Ranges"] == "bytes"
    assert int(headers["Content-Length"]) == len(content)
    assert body == content


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-50", -50, None), ("bytes=10-999999999", 10, None)],
)
def test_a_range_is_a_206_with_those_bytes(download, header, start, end):
    get, content = download
    expected = content[start : (end + 1 if end is not None else None)]
    first = start if start >= 0 else len(content) + start

    status, headers, body = get(Range=header)

    assert status == 206
    assert body == expected
    assert headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(content)}"
    assert int(headers["Content-Length"]) == len(expected)
    assert headers["Content-Disposition"] == 'attachment; filename="clip_compressed.mp4"'


def test_a_range_past_the_end_is_a_416_that_gives_the_size(download):
    get, content = download

    status, headers, body = get(Range=f"bytes={len(content)}-")

    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(content)}"
    assert json.loads(body)["error"]["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["items=0-10", "bytes=0-10,20-30", "bytes=50-10", "bytes=abc"])
def test_a_range_we_do_not_serve_gets_the_whole_file(download, header):
    get, content = download

    status, _, body = get(Range=header)

    assert (status, body) == (200, content)
