"""The outbound guard (apps/core/outbound.py) against server-side request forgery, with real
listeners that prove a refused request never connected, and its request function's limits."""

from __future__ import annotations

import io
import ssl
import time
from collections.abc import Iterator

import pytest
import trustme

from apps.core import outbound
from apps.core.outbound import (
    OutboundFailed,
    OutboundRefused,
    OutboundTimeout,
    OutboundTooLarge,
    check_url,
    outbound_request,
)
from tests.http_servers import RecordingServer, Route, ipv6_loopback_available


@pytest.fixture
def victim() -> Iterator[RecordingServer]:
    """A service on this machine's loopback that a forged request would like to reach."""
    server = RecordingServer("127.0.0.1", {"/": Route(200, body=b"secret")})
    yield server
    server.close()


@pytest.fixture
def source(settings) -> Iterator[RecordingServer]:
    """A server the guard lets through: 127.0.0.2 is allowed by OUTBOUND_ALLOWED_NETWORKS, while
    the rest of loopback (the victim on 127.0.0.1) is not."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    server = RecordingServer("127.0.0.2")
    yield server
    server.close()


# Every way of writing 127.0.0.1 that a resolver (and so a connection) accepts.
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0x7f.0x0.0x0.0x1",
    "0177.0.0.1",  # octal
    "017700000001",
    "127.1",  # short forms
    "127.0.1",
    "localhost",  # a name that resolves to it
    "LOCALHOST",
]
IPV4_AS_IPV6_SPELLINGS = [
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:7f00:0001]",
]
OTHER_V6_FORMS = [
    "[64:ff9b::7f00:1]",  # NAT64
    "[64:ff9b::127.0.0.1]",
    "[64:ff9b:1::7f00:1]",  # local-use NAT64
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[::127.0.0.1]",  # IPv4-compatible (deprecated)
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + IPV4_AS_IPV6_SPELLINGS + OTHER_V6_FORMS + ["0.0.0.0", "0"])
def test_loopback_in_every_spelling_is_refused_without_connecting(victim, host):
    with pytest.raises(OutboundRefused) as refused:
        outbound_request("GET", f"http://{host}:{victim.port}/", timeout=3)
    assert "Konvrt may not send requests to" in refused.value.message
    assert victim.connections == 0
    assert victim.requests == []


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + IPV4_AS_IPV6_SPELLINGS[:1] + ["0.0.0.0"])
def test_the_same_spellings_reach_the_listener_once_their_network_is_allowed(settings, victim, host):
    """The control for the test above: each spelling really leads to the listener, so its refusal
    (and the listener's silence) is the guard's doing, not a spelling that goes nowhere."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8", "0.0.0.0/32"]
    response = outbound_request("GET", f"http://{host}:{victim.port}/", timeout=3)
    assert (response.status, response.body) == (200, b"secret")
    assert victim.connections == 1


@pytest.mark.skipif(not ipv6_loopback_available(), reason="this machine has no IPv6 loopback")
@pytest.mark.parametrize("host", ["[::1]", "[0:0:0:0:0:0:0:1]", "[::0001]"])
def test_ipv6_loopback_is_refused_without_connecting(host):
    server = RecordingServer("::1", {"/": Route(200, body=b"secret")})
    try:
        with pytest.raises(OutboundRefused):
            outbound_request("GET", f"http://{host}:{server.port}/", timeout=3)
        assert server.connections == 0
    finally:
        server.close()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("10.255.255.254", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("100.100.100.200", "metadata"),
        ("[fd00:ec2::254]", "metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "carrier-grade"),
        ("198.18.0.1", "private"),
        ("192.0.2.1", "private"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("[::]", "unspecified"),
        ("[fc00::1]", "private"),
        ("[fe80::1]", "link-local"),
        ("[ff02::1]", "multicast"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[::ffff:169.254.169.254]", "metadata"),
        ("[64:ff9b::a9fe:a9fe]", "metadata"),
        ("[64:ff9b::192.168.0.1]", "private"),
        ("[2001:db8::1]", "private"),
        ("2852039166", "metadata"),  # 169.254.169.254 in decimal
        ("0xa9fea9fe", "metadata"),
    ],
)
def test_private_reserved_and_metadata_addresses_are_refused_with_the_reason(address, reason):
    with pytest.raises(OutboundRefused) as refused:
        check_url(f"http://{address}/latest/meta-data/")
    assert reason in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/a.mp4",
        "https://93.184.216.34:8443/x?y=1",
        "http://[2606:4700::1111]/",
        "http://[64:ff9b::808:808]/",
    ],
)
def test_public_addresses_pass_and_keep_the_checked_address(url):
    target = check_url(url)
    assert target.address.replace("[", "") in url or target.address == "64:ff9b::808:808"
    assert target.scheme in ("http", "https")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://8.8.8.8/file", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("gopher://8.8.8.8:70/", "Only http:// and https://"),
        ("http://user:secret@8.8.8.8/", "user name or password"),
        ("http://user@8.8.8.8/", "user name or password"),
        ("http:///path", "no host name"),
        ("http://8.8.8.8:99999/", "not a valid URL"),
        ("", "absolute http"),
        ("not a url", "Only http:// and https://"),
        ("http://no-such-host.invalid/", "could not be found"),
    ],
)
def test_unusable_urls_are_refused_with_a_sentence(url, words):
    with pytest.raises(OutboundRefused) as refused:
        check_url(url)
    assert words in refused.value.message


def test_a_name_with_any_private_address_is_refused(monkeypatch):
    monkeypatch.setattr(outbound, "_resolve", lambda host, port: ["93.184.216.34", "10.1.2.3"])
    with pytest.raises(OutboundRefused) as refused:
        check_url("http://media.example/a.mp4")
    assert "media.example" in refused.value.message
    assert refused.value.details == {"host": "media.example", "address": "10.1.2.3"}


def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(monkeypatch, source):
    """DNS rebinding: a name that answers a permitted address to the check and a forbidden one a
    moment later still reaches only the address that was checked, with the name in Host."""
    source.routes["/a.mp4"] = Route(200, body=b"media")
    answers = [["127.0.0.2"], ["127.0.0.1"]]
    monkeypatch.setattr(outbound, "_resolve", lambda host, port: answers.pop(0))
    response = outbound_request("GET", f"http://media.example:{source.port}/a.mp4", timeout=3)
    assert response.body == b"media"
    assert answers == [["127.0.0.1"]]  # resolved once
    assert source.requests[0].headers["Host"] == f"media.example:{source.port}"


def test_a_redirect_into_loopback_is_refused_without_connecting(source, victim):
    source.routes["/go"] = Route(302, {"Location": victim.url("/")})
    with pytest.raises(OutboundRefused):
        outbound_request("GET", source.url("/go"), timeout=3, max_redirects=5)
    assert [seen.path for seen in source.requests] == ["/go"]
    assert victim.connections == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://localhost:{victim}/",
        "http://2130706433:{victim}/",
        "http://[::ffff:127.0.0.1]:{victim}/",
        "http://10.0.0.1/",
        "file:///etc/passwd",
    ],
)
def test_redirects_into_forbidden_places_are_refused(source, victim, location):
    source.routes["/go"] = Route(301, {"Location": location.format(victim=victim.port)})
    with pytest.raises(OutboundRefused):
        outbound_request("GET", source.url("/go"), timeout=3, max_redirects=5)
    assert victim.connections == 0


def test_allowed_redirects_are_followed_and_counted(source):
    source.routes["/one"] = Route(302, {"Location": "/two"})
    source.routes["/two"] = Route(307, {"Location": source.url("/file.mp4")})
    source.routes["/file.mp4"] = Route(200, {"Content-Type": "video/mp4"}, b"x" * 10)
    response = outbound_request("GET", source.url("/one"), timeout=3, max_redirects=5)
    assert (response.status, response.body) == (200, b"x" * 10)
    assert response.url == source.url("/file.mp4")
    assert response.redirects == [source.url("/two"), source.url("/file.mp4")]


def test_more_redirects_than_allowed_fail_with_a_sentence(source):
    source.routes["/loop"] = Route(302, {"Location": "/loop"})
    with pytest.raises(OutboundFailed, match="redirected more than 5 times"):
        outbound_request("GET", source.url("/loop"), timeout=3, max_redirects=5)
    assert len(source.requests) == 6


def test_without_redirects_a_3xx_is_the_answer(source, victim):
    source.routes["/go"] = Route(302, {"Location": victim.url("/")})
    response = outbound_request("POST", source.url("/go"), body=b"{}", timeout=3)
    assert response.status == 302
    assert victim.connections == 0


def test_a_declared_length_over_the_cap_fails_before_reading(source):
    source.routes["/big"] = Route(200, body=b"x" * 5000)
    with pytest.raises(OutboundTooLarge, match="larger than 4.9 KB"):
        outbound_request("GET", source.url("/big"), timeout=3, max_bytes=5000 - 1)


def test_an_undeclared_body_over_the_cap_fails_while_streaming(source):
    source.routes["/big"] = Route(200, body=b"x" * 300_000, no_length=True)
    sink = io.BytesIO()
    with pytest.raises(OutboundTooLarge):
        outbound_request("GET", source.url("/big"), timeout=3, max_bytes=100_000, sink=sink)
    assert sink.tell() <= 100_000


def test_a_success_streams_into_the_sink_and_an_error_page_does_not(source):
    source.routes["/ok"] = Route(200, body=b"y" * 200_000, no_length=True)
    source.routes["/gone"] = Route(404, body=b"no such file")
    sink = io.BytesIO()
    response = outbound_request("GET", source.url("/ok"), timeout=3, max_bytes=200_000, sink=sink)
    assert (response.body, response.bytes_read, sink.getvalue()) == (b"", 200_000, b"y" * 200_000)
    sink = io.BytesIO()
    response = outbound_request("GET", source.url("/gone"), timeout=3, sink=sink)
    assert (response.status, response.body, sink.getvalue()) == (404, b"no such file", b"")


def test_a_slow_body_is_cut_off_at_the_deadline(source):
    source.routes["/slow"] = Route(200, body=b"z" * 20 * 1024, drip_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(OutboundTimeout, match="did not answer within 1 seconds"):
        outbound_request("GET", source.url("/slow"), timeout=1)
    assert time.monotonic() - started < 3


def test_a_closed_port_is_a_failure_with_a_sentence(source):
    port = source.port
    source.close()
    with pytest.raises(OutboundFailed, match="Could not connect to the server at 127.0.0.2"):
        outbound_request("GET", f"http://127.0.0.2:{port}/", timeout=3)


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def _tls_server(ca: trustme.CA, name: str) -> RecordingServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return RecordingServer("127.0.0.2", {"/a": Route(200, body=b"tls")}, tls=context)


def test_https_checks_the_certificate_against_the_name_not_the_address(settings, monkeypatch, certificate_authority):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    monkeypatch.setattr(outbound, "_resolve", lambda host, port: ["127.0.0.2"])
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    good = _tls_server(certificate_authority, "media.example")
    wrong = _tls_server(certificate_authority, "other.example")
    try:
        response = outbound_request(
            "GET", f"https://media.example:{good.port}/a", timeout=3, ssl_context=client_context
        )
        assert response.body == b"tls"
        with pytest.raises(OutboundFailed, match="secure connection to media.example"):
            outbound_request("GET", f"https://media.example:{wrong.port}/a", timeout=3, ssl_context=client_context)
        assert wrong.requests == []
    finally:
        good.close()
        wrong.close()
