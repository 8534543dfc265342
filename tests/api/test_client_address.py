"""Who the client is, for rate limits: the address NUM_PROXIES hops from the right of
X-Forwarded-For behind a real proxy, never what a client wrote there itself; IPv6 per /64."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import Client, RequestFactory

from apps.core.utils import client_ip
from tests.api.conftest import API
from tests.api.test_throttling import GENEROUS

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def burst_of_three(settings) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**GENEROUS, "anon_burst": "3/minute"},
    }


@pytest.fixture
def proxy(live_server) -> Iterator[str]:
    """A real reverse proxy process in front of the live server; its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.api.reverse_proxy", live_server.url],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def get(base_url: str, path: str, *, source: str = "127.0.0.1", headers: dict[str, str] | None = None) -> int:
    """GET from the given local address (any 127.x.y.z is this machine), without cookies: every
    request is a new browser. Returns the status."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        json.loads(response.read())  # the envelope, always
        return response.status
    finally:
        connection.close()


pytestmark = pytest.mark.django_db(transaction=True)


def test_behind_one_proxy_each_client_has_its_own_budget(settings, burst_of_three, proxy, redis_connection):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    first = [get(proxy, f"{API}/session/", source="127.0.0.2") for _ in range(4)]
    second = get(proxy, f"{API}/session/", source="127.0.0.3")

    assert first == [200, 200, 200, 429]
    assert second == 200  # a neighbour behind the same router is not refused


def test_spoofed_forwarded_for_entries_do_not_make_a_new_client(settings, burst_of_three, proxy, redis_connection):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    statuses = [
        get(proxy, f"{API}/session/", source="127.0.0.2", headers={"X-Forwarded-For": f"198.51.100.{n}, 10.0.0.{n}"})
        for n in range(4)
    ]

    assert statuses == [200, 200, 200, 429]


def test_without_proxies_forwarded_for_is_ignored(burst_of_three, live_server, redis_connection):
    statuses = [
        get(live_server.url, f"{API}/session/", source="127.0.0.2", headers={"X-Forwarded-For": f"198.51.100.{n}"})
        for n in range(4)
    ]

    assert statuses == [200, 200, 200, 429]
    assert get(live_server.url, f"{API}/session/", source="127.0.0.3") == 200


# --- the identity itself --------------------------------------------------------------------------
def identity(settings, *, remote: str, forwarded: str | None = None, proxies: int = 0) -> str:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, **headers))


def test_the_client_is_num_proxies_hops_from_the_right(settings):
    chain = "6.6.6.6, 203.0.113.9, 10.1.1.1"
    assert identity(settings, remote="10.0.0.1", forwarded=chain, proxies=0) == "10.0.0.1"
    assert identity(settings, remote="10.0.0.1", forwarded=chain, proxies=1) == "10.1.1.1"
    assert identity(settings, remote="10.0.0.1", forwarded=chain, proxies=2) == "203.0.113.9"
    # Behind a proxy, a request that reached the app around it has no header: its socket.
    assert identity(settings, remote="10.0.0.1", proxies=1) == "10.0.0.1"


def test_garbage_where_the_client_should_be_falls_back_to_the_socket(settings):
    assert identity(settings, remote="10.0.0.1", forwarded="not-an-address", proxies=1) == "10.0.0.1"
    assert identity(settings, remote="10.0.0.1", forwarded="203.0.113.9:51000", proxies=1) == "203.0.113.9"


def test_ipv6_is_counted_per_64(settings):
    same = {
        identity(settings, remote="2001:db8:1:2::1"),
        identity(settings, remote="2001:db8:1:2:ffff:ffff:ffff:fffe"),
        identity(settings, remote="10.0.0.1", forwarded="[2001:db8:1:2::9]:443", proxies=1),
    }
    assert same == {"2001:db8:1:2::/64"}
    assert identity(settings, remote="2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert identity(settings, remote="::ffff:192.0.2.1") == "192.0.2.1"


def test_rotating_ipv6_addresses_within_a_64_does_not_escape_the_limit(burst_of_three, redis_connection):
    # A new browser (session) each time, so that only the address counts.
    statuses = [Client().get(f"{API}/session/", REMOTE_ADDR=f"2001:db8:1:2::{n:x}").status_code for n in range(1, 5)]

    assert statuses == [200, 200, 200, 429]
    assert Client().get(f"{API}/session/", REMOTE_ADDR="2001:db8:1:3::1").status_code == 200
