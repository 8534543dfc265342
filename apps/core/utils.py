"""Small helpers shared by the API and the workers."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import TYPE_CHECKING

from django.utils.http import content_disposition_header
from rest_framework.throttling import BaseThrottle

if TYPE_CHECKING:
    from django.http import HttpRequest

MAX_FILENAME_LENGTH = 200
_UNSAFE_CHARACTERS = re.compile(r'[\\/:*?"<>|]')
_WHITESPACE = re.compile(r"\s+")


def sanitize_filename(name: str, *, fallback: str = "file") -> str:
    """A client's filename reduced to something safe to show and to put in a header.

    The result is never used as a storage path (keys are generated from ids); this only keeps the
    original name as data. Path components, control characters, leading dots and dashes are
    dropped, unicode is normalised, and the length is capped with the extension kept.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_CHARACTERS.sub("_", name)
    name = _WHITESPACE.sub(" ", name).strip().lstrip(".-").strip()
    if not name:
        return fallback
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: MAX_FILENAME_LENGTH - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name


def file_extension(name: str) -> str:
    """The lower-cased extension of a filename, without the dot ('' when there is none)."""
    stem, dot, extension = (name or "").rpartition(".")
    return extension.lower() if dot and stem else ""


def human_size(size: int) -> str:
    """A byte count as people read it: ``26214400`` → ``"25 MB"``."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def client_ip(request: HttpRequest) -> str:
    """The caller's address as rate limits count it: one IPv4 address, or one IPv6 /64 network.

    Behind ``NUM_PROXIES`` proxies (DRF's setting: each appends the address it received from to
    X-Forwarded-For) the client is that many entries from the right; whatever a client wrote
    further left itself is ignored. With 0 (the default) it is the socket's address. IPv6 is counted
    per /64 because one home or one cloud machine is given a whole /64 and can rotate through it.
    """
    # DRF's own reading of NUM_PROXIES and X-Forwarded-For, as its throttles do it.
    chosen = BaseThrottle().get_ident(request)  # type: ignore[arg-type]
    return _network(chosen) or _network(request.META.get("REMOTE_ADDR", "")) or "unknown"


def _network(address: str | None) -> str | None:
    """``address`` as the identity rate limits count, ``None`` when it is no IP address."""
    text = (address or "").strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51000, as some proxies append it
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def attachment_disposition(file_name: str) -> str:
    """RFC 6266 ``Content-Disposition`` for a download: a plain ASCII ``filename`` that every
    client reads and, when the real name is not ASCII, ``filename*`` with it in UTF-8 (Django
    sends only the latter, which some clients ignore). Local downloads send it themselves; object
    storage signs it into the download URL."""
    header = content_disposition_header(as_attachment=True, filename=file_name)
    if "filename*=" not in header:
        return header
    ascii_name = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode("ascii")
    ascii_name = ascii_name.replace("\\", "_").replace('"', "_").strip() or "download"
    return f'attachment; filename="{ascii_name}"; {header.split("; ", 1)[1]}'
