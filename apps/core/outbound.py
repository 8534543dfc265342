"""The one way Konvrt makes a request to an address a client gave it (webhooks, URL import).

A client-supplied URL must never let a request reach the machine's own services, the private
network around it or a cloud metadata endpoint (server-side request forgery). The guard:

- takes http and https only, and no ``user:password@`` part;
- resolves the host **once** and refuses it when any of its addresses is loopback, private,
  link-local, multicast, reserved, unspecified, shared (CGNAT), an IPv4-mapped, NAT64, 6to4 or
  Teredo form of one of those, or a cloud metadata address, unless the address lies in
  ``OUTBOUND_ALLOWED_NETWORKS``. Every spelling of an address (``2130706433``, ``0x7f000001``,
  ``0177.0.0.1``, ``127.1``) is judged by what the resolver makes of it, which is what a connection
  would use;
- connects to the address it checked, not to the name (no second lookup, so a DNS answer that
  changes between the check and the connection cannot steer it), while the ``Host`` header, TLS
  SNI and the certificate check still use the name (urllib3's connection pools with
  ``server_hostname``/``assert_hostname``);
- checks every redirect it follows again, caps the bytes it reads and keeps to one deadline.

urllib3 is used at the connection level on purpose: a higher-level client (requests, urllib3's
PoolManager) resolves names itself at connect time, which is the second lookup this guard exists
to avoid.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from apps.core.exceptions import KonvrtError
from apps.core.utils import human_size

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_SIZE = 64 * 1024
# What is kept of a body that is not a success (an error page), whatever max_bytes says.
ERROR_BODY_LIMIT = 64 * 1024

# Addresses that cloud providers answer instance metadata (and credentials) on. Most are already
# link-local or private; they are named so that the reason given is the right one.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS resolver
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS over IPv6
    )
)
NAT64_NETWORKS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


class OutboundRefused(KonvrtError):
    """The address may not be contacted (or cannot be used at all). The message is a sentence for
    the person who gave the URL; at create time it is a 400 on that field."""

    status_code = 400
    default_code = "validation_error"
    default_detail = "Konvrt may not send requests to that address."


class OutboundFailed(KonvrtError):
    """A permitted request did not succeed: no connection, a timeout, a TLS failure, too many
    redirects or too many bytes. The message says so in words."""

    status_code = 502
    default_code = "outbound_failed"
    default_detail = "The request to that address failed."


class OutboundTimeout(OutboundFailed):
    default_detail = "The server did not answer in time."


class OutboundTooLarge(OutboundFailed):
    default_detail = "The answer was larger than allowed."


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed the guard, with the address a connection must go to."""

    url: str
    scheme: str
    host: str  # the name as given (IDNA-encoded); Host header, SNI and certificate checks use it
    port: int
    path: str  # path and query, as sent in the request line
    address: str  # the checked IP address the connection goes to

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return name if self.port == default_port else f"{name}:{self.port}"


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    url: str  # the URL that answered (after redirects)
    body: bytes = b""  # empty when the body went to a sink
    bytes_read: int = 0
    redirects: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


def allowed_networks() -> list[IPNetwork]:
    """``OUTBOUND_ALLOWED_NETWORKS`` as networks (validated at start-up by the settings)."""
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.OUTBOUND_ALLOWED_NETWORKS]


def address_refusal(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why an address may not be contacted (a few words), or None when it may."""
    allowed = list(allowed)
    if any(address.version == network.version and address in network for network in allowed):
        return None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = address_refusal(embedded, allowed)
            return f"{reason} (written as IPv6)" if reason else None
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address (this machine)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.version == 4 and address in SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private network address"
    if not address.is_global:
        return "a reserved address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, when it is one of the forms that reach IPv4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in network for network in NAT64_NETWORKS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    # IPv4-compatible (::a.b.c.d, deprecated): still routed to IPv4 by some stacks.
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address))
    return None


def _resolve(host: str, port: int) -> list[str]:
    """Every address the resolver gives for a host (literal addresses in any spelling included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_url(url: str) -> CheckedTarget:
    """Parse a URL, resolve its host once and check every address; raise OutboundRefused otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise OutboundRefused("Give an absolute http:// or https:// address.")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise OutboundRefused("That address is not a valid URL.") from e
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundRefused("Only http:// and https:// addresses can be used.")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("The address must not contain a user name or password.")
    hostname = parts.hostname
    if not hostname:
        raise OutboundRefused("The address has no host name.")
    try:
        host = hostname.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise OutboundRefused(f"The host name {hostname} is not valid.") from e
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as e:
        raise OutboundRefused(f"The host {hostname} could not be found.") from e
    if not addresses:
        raise OutboundRefused(f"The host {hostname} could not be found.")
    allowed = allowed_networks()
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%", 1)[0])
        reason = address_refusal(address, allowed)
        if reason is not None:
            logger.warning("Outbound request to %s refused: %s is %s", hostname, address, reason)
            raise OutboundRefused(
                f"Konvrt may not send requests to {hostname}: it points to {reason}.",
                details={"host": hostname, "address": str(address)},
            )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return CheckedTarget(url=url, scheme=scheme, host=host, port=port, path=path, address=addresses[0])


def outbound_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    max_redirects: int = 0,
    max_bytes: int | None = None,
    sink: BinaryIO | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> OutboundResponse:
    """Send one request through the guard and read its answer.

    ``timeout`` bounds the whole exchange (connections, redirects and body). Redirects are followed
    up to ``max_redirects``, each checked again (a 303, or a 301/302 after a POST, turns into a GET
    without a body); with ``max_redirects=0`` a 3xx is returned as it is. A success's body goes to
    ``sink`` when one is given (else into ``body``); reading more than ``max_bytes`` raises
    OutboundTooLarge, before any byte is read when Content-Length already says so. An answer that
    is not a success keeps at most 64 KB of its body.
    """
    deadline = time.monotonic() + timeout
    target = check_url(url)
    redirects: list[str] = []
    method = method.upper()
    while True:
        response = _send(target, method, headers or {}, body, deadline, timeout, ssl_context)
        try:
            if response.status in REDIRECT_STATUSES and max_redirects > 0:
                location = response.headers.get("location")
                if not location:
                    raise OutboundFailed(f"The server at {target.host} redirected without saying where to.")
                if len(redirects) >= max_redirects:
                    raise OutboundFailed(f"The address redirected more than {max_redirects} times.")
                next_url = urljoin(target.url, location)
                redirects.append(next_url)
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, body = "GET", None
                target = check_url(next_url)
                continue
            return _read(response, target, deadline, timeout, max_bytes, sink, redirects)
        finally:
            response.release_conn()
            response.close()


def _send(
    target: CheckedTarget,
    method: str,
    headers: Mapping[str, str],
    body: bytes | None,
    deadline: float,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> urllib3.BaseHTTPResponse:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OutboundTimeout(f"The server at {target.host} did not answer within {timeout:g} seconds.")
    pool_timeout = urllib3.Timeout(connect=remaining, read=remaining)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=pool_timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ssl_context=ssl_context,
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=pool_timeout, retries=False, maxsize=1)
    request_headers = {name: value for name, value in headers.items() if name.lower() != "host"}
    request_headers["Host"] = target.host_header
    try:
        return pool.urlopen(
            method,
            target.path,
            body=body,
            headers=request_headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
            release_conn=False,
        )
    except NewConnectionError as e:  # before Urllib3Timeout: urllib3 2 derives it from ConnectTimeoutError
        raise OutboundFailed(f"Could not connect to the server at {target.host}.") from e
    except Urllib3Timeout as e:
        raise OutboundTimeout(f"The server at {target.host} did not answer within {timeout:g} seconds.") from e
    except Urllib3SSLError as e:
        raise OutboundFailed(
            f"A secure connection to {target.host} could not be made (its certificate was refused)."
        ) from e
    except (Urllib3Error, OSError) as e:
        raise OutboundFailed(f"Could not connect to the server at {target.host}.") from e


def _read(
    response: urllib3.BaseHTTPResponse,
    target: CheckedTarget,
    deadline: float,
    timeout: float,
    max_bytes: int | None,
    sink: BinaryIO | None,
    redirects: list[str],
) -> OutboundResponse:
    headers = {name.lower(): value for name, value in response.headers.items()}
    success = 200 <= response.status < 300
    limit = max_bytes if success else min(max_bytes or ERROR_BODY_LIMIT, ERROR_BODY_LIMIT)
    declared = headers.get("content-length", "")
    if success and limit is not None and declared.isdigit() and int(declared) > limit:
        raise OutboundTooLarge(f"The file at that address is larger than {human_size(limit)}.")
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise OutboundTimeout(f"The server at {target.host} did not answer within {timeout:g} seconds.")
            chunk = response.read1(CHUNK_SIZE)
            if not chunk:
                break
            total += len(chunk)
            if limit is not None and total > limit:
                if not success:
                    chunks.append(chunk[: len(chunk) - (total - limit)])
                    break
                raise OutboundTooLarge(f"The file at that address is larger than {human_size(limit)}.")
            if success and sink is not None:
                sink.write(chunk)
            else:
                chunks.append(chunk)
    except Urllib3Timeout as e:
        raise OutboundTimeout(f"The server at {target.host} did not answer within {timeout:g} seconds.") from e
    except (Urllib3Error, OSError) as e:
        raise OutboundFailed(f"The connection to the server at {target.host} broke off.") from e
    return OutboundResponse(
        status=response.status,
        headers=headers,
        url=target.url,
        body=b"".join(chunks),
        bytes_read=total,
        redirects=redirects,
    )
