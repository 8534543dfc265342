"""A local stand-in for the part of Cloudinary that Konvrt's storage uses.

No machine here reaches Cloudinary, so the tests point the real ``cloudinary`` SDK at this server
through its own configuration (``CLOUDINARY_URL`` with ``upload_prefix`` and
``secure_distribution``). It speaks HTTPS with a throwaway CA (trustme), so the CA-bundle setting is
exercised too, and implements:

- ``POST /v1_1/<cloud>/<resource type>/upload``: a signed multipart upload, whole or in chunks
  (``X-Unique-Upload-Id`` + ``Content-Range``), answering like Cloudinary (public_id, version,
  format, bytes, secure_url...);
- ``POST /v1_1/<cloud>/<resource type>/destroy``: ``{"result": "ok"}`` or ``"not found"``;
- ``GET /v1_1/<cloud>/ping``: the Admin API's ping, with HTTP basic auth;
- ``GET /v1_1/<cloud>/resources/<resource type>/<type>?prefix=``: the Admin API's listing, paged
  by ``next_cursor``, with HTTP basic auth;
- ``GET``/``HEAD /<cloud>/<resource type>/<type>/[s--<signature>--/]v<version>/<public id>.<format>``:
  the stored bytes, originals only; an ``authenticated`` asset only to a URL signed as the SDK signs
  it, and never under another access type;
- ``GET /v1_1/<cloud>/<resource type>/download?...``: the download API (``private_download_url``):
  signed parameters, refused once ``expires_at`` has passed, ``Content-Disposition: attachment``
  when asked.

It checks what the SDK sends the way Cloudinary does, so a wrong call fails the test: the api key,
the signature (the configured algorithm over the sorted parameters plus the api secret), a fresh
timestamp, a resource type that fits the file, contiguous chunks, and no transformation of any kind.
Failures can be injected per action, once or for good: an answer that never comes (the client's
timeout fires), a 500 with Cloudinary's JSON error, or a gateway's 502 HTML page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

IMAGE_FORMATS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tiff"})
VIDEO_FORMATS = frozenset(
    {"mp4", "mov", "avi", "mkv", "webm", "wmv", "flv", "mp3", "wav", "aac", "m4a", "ogg", "flac", "opus"}
)
# Parameters that would make Cloudinary transform or derive something; Konvrt must never send them.
TRANSFORMATION_PARAMETERS = frozenset({"transformation", "eager", "format", "responsive_breakpoints", "raw_convert"})
UNSIGNED_PARAMETERS = frozenset({"file", "api_key", "signature", "resource_type", "cloud_name"})
ACTIONS = ("upload", "destroy", "ping", "delivery", "download", "resources")
ACCESS_TYPES = frozenset({"upload", "authenticated", "private"})
FAILURE_MODES = ("timeout", "error", "gateway")


@dataclass
class Asset:
    resource_type: str
    public_id: str
    format: str
    data: bytes
    version: int
    type: str = "upload"  # the access type
    created_at: float = field(default_factory=time.time)


@dataclass
class Call:
    action: str
    resource_type: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class _Failure:
    action: str
    mode: str
    remaining: int | None  # None: for good


@dataclass
class _ChunkedUpload:
    public_id: str
    format: str
    resource_type: str
    data: bytearray = field(default_factory=bytearray)


class StandInError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CloudinaryStandIn:
    cloud_name = "konvrt-standin"
    api_key = "481516234200"
    api_secret = "standin-secret-do-not-use"  # noqa: S105

    def __init__(self, *, ssl_context: ssl.SSLContext, signature_algorithm: str = "sha1") -> None:
        self.signature_algorithm = signature_algorithm
        self.assets: dict[tuple[str, str], Asset] = {}
        self.calls: list[Call] = []
        # Seconds to wait before answering, per action: makes concurrent clients overlap.
        self.latency: dict[str, float] = {}
        self._ssl_context = ssl_context
        self._failures: list[_Failure] = []
        self._chunked: dict[str, _ChunkedUpload] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._next_version = 1_700_000_000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> CloudinaryStandIn:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        # Polled every 50 ms: stop() (shutdown) waits for the loop's next poll, 0.5 s by default.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="cloudinary-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # let hanging handlers go
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def host(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def cloudinary_url(self) -> str:
        """A CLOUDINARY_URL that sends the SDK's API calls and delivery URLs here."""
        return (
            f"cloudinary://{self.api_key}:{self.api_secret}@{self.cloud_name}"
            f"?upload_prefix=https://{self.host}&secure_distribution={self.host}"
            f"&signature_algorithm={self.signature_algorithm}"
        )

    # --- failure injection ----------------------------------------------------------------------
    def fail(self, action: str, mode: str = "error", *, times: int | None = 1) -> None:
        """Make the next ``times`` calls of ``action`` fail (``times=None``: every call from now on)."""
        assert action in ACTIONS and mode in FAILURE_MODES
        with self._lock:
            self._failures.append(_Failure(action=action, mode=mode, remaining=times))

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()

    def _take_failure(self, action: str) -> str | None:
        with self._lock:
            for failure in self._failures:
                if failure.action != action:
                    continue
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._failures.remove(failure)
                return failure.mode
        return None

    # --- what tests look at ---------------------------------------------------------------------
    def calls_of(self, action: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.action == action]

    def asset(self, public_id: str, resource_type: str) -> Asset | None:
        with self._lock:
            return self.assets.get((resource_type, public_id))

    def put_asset(
        self,
        *,
        public_id: str,
        resource_type: str,
        format: str,
        data: bytes,
        type: str = "authenticated",
        created_at: float | None = None,
    ) -> Asset:
        """Place a file as if it had been uploaded earlier (``created_at``: when, in Unix seconds)."""
        with self._lock:
            asset = Asset(resource_type, public_id, format, data, self._new_version(), type, created_at or time.time())
            self.assets[(resource_type, public_id)] = asset
            return asset

    def delivery_url(self, asset: Asset) -> str:
        """Cloudinary's answer: the unsigned URL (which an authenticated asset does not answer)."""
        return (
            f"https://{self.host}/{self.cloud_name}/{asset.resource_type}/{asset.type}/"
            f"v{asset.version}/{asset.public_id}.{asset.format}"
        )

    def url_signature(self, to_sign: str) -> str:
        """A delivery URL's ``s--...--`` part, as Cloudinary computes it."""
        digest = hashlib.new(self.signature_algorithm, (to_sign + self.api_secret).encode()).digest()
        return "s--" + base64.urlsafe_b64encode(digest)[:8].decode() + "--"

    def _new_version(self) -> int:
        self._next_version += 1
        return self._next_version

    # --- the API --------------------------------------------------------------------------------
    def _record(self, action: str, resource_type: str, params: dict[str, str], headers: dict[str, str]) -> None:
        with self._lock:
            self.calls.append(Call(action, resource_type, dict(params), dict(headers)))

    def _verify_signed(self, params: dict[str, str]) -> None:
        if params.get("api_key") != self.api_key:
            raise StandInError(401, f"Unknown API key {params.get('api_key')!r}")
        signed = {key: value for key, value in params.items() if key not in UNSIGNED_PARAMETERS and value}
        to_sign = "&".join(f"{key}={value}".replace("&", "%26") for key, value in sorted(signed.items()))
        expected = hashlib.new(self.signature_algorithm, (to_sign + self.api_secret).encode()).hexdigest()
        if params.get("signature") != expected:
            raise StandInError(401, f"Invalid Signature {params.get('signature')}. String to sign - '{to_sign}'.")
        timestamp = params.get("timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 3600:
            raise StandInError(400, f"Stale request - reported time is {timestamp!r}")

    def handle_upload(
        self, resource_type: str, params: dict[str, str], file: tuple[str, bytes] | None, headers: dict[str, str]
    ) -> dict[str, Any]:
        self._verify_signed(params)
        forbidden = TRANSFORMATION_PARAMETERS & {key for key, value in params.items() if value}
        if forbidden:
            raise StandInError(400, f"Transformations are not expected here: {sorted(forbidden)}")
        if file is None:
            raise StandInError(400, "Missing required parameter - file")
        filename, data = file
        public_id = params.get("public_id") or hashlib.sha1(data).hexdigest()[:20]  # noqa: S324
        if params.get("folder"):
            public_id = f"{params['folder'].strip('/')}/{public_id}"
        file_format = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        allowed = IMAGE_FORMATS if resource_type == "image" else VIDEO_FORMATS if resource_type == "video" else None
        if allowed is None or file_format not in allowed:
            kind = "image" if resource_type == "image" else "video"
            raise StandInError(400, f"Invalid {kind} file")

        upload_id = headers.get("x-unique-upload-id")
        content_range = headers.get("content-range")
        if upload_id or content_range:
            data, public_id, done = self._add_chunk(
                upload_id, content_range, public_id, file_format, resource_type, data
            )
            if not done:
                return {"done": False, "public_id": public_id, "bytes": len(data), "resource_type": resource_type}

        access_type = params.get("type") or "upload"
        if access_type not in ACCESS_TYPES:
            raise StandInError(400, f"Invalid type {access_type!r}")
        with self._lock:
            asset = Asset(resource_type, public_id, file_format, bytes(data), self._new_version(), access_type)
            self.assets[(resource_type, public_id)] = asset
        return {
            "asset_id": hashlib.md5(public_id.encode()).hexdigest(),  # noqa: S324
            "public_id": public_id,
            "version": asset.version,
            "signature": hashlib.sha1(asset.data).hexdigest(),  # noqa: S324
            "format": file_format,
            "resource_type": resource_type,
            "type": asset.type,
            "bytes": len(asset.data),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "url": self.delivery_url(asset).replace("https://", "http://", 1),
            "secure_url": self.delivery_url(asset),
            "original_filename": filename.rsplit(".", 1)[0],
        }

    def _add_chunk(
        self,
        upload_id: str | None,
        content_range: str | None,
        public_id: str,
        file_format: str,
        resource_type: str,
        data: bytes,
    ) -> tuple[bytes, str, bool]:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range or "")
        if not upload_id or match is None:
            raise StandInError(400, "A chunk needs both X-Unique-Upload-Id and Content-Range")
        start, end, total = (int(group) for group in match.groups())
        if end - start + 1 != len(data):
            raise StandInError(400, f"Content-Range {content_range} does not match a chunk of {len(data)} bytes")
        with self._lock:
            upload = self._chunked.setdefault(upload_id, _ChunkedUpload(public_id, file_format, resource_type))
            if start != len(upload.data):
                raise StandInError(400, f"Chunk starts at {start}, expected {len(upload.data)}")
            upload.data.extend(data)
            if end + 1 < total:
                return bytes(upload.data), upload.public_id, False
            del self._chunked[upload_id]
        if len(upload.data) != total:
            raise StandInError(400, f"Assembled {len(upload.data)} bytes, expected {total}")
        return bytes(upload.data), upload.public_id, True

    def handle_destroy(self, resource_type: str, params: dict[str, str]) -> dict[str, Any]:
        self._verify_signed(params)
        public_id = params.get("public_id", "")
        access_type = params.get("type") or "upload"
        with self._lock:
            asset = self.assets.get((resource_type, public_id))
            removed = asset is not None and asset.type == access_type
            if removed:
                del self.assets[(resource_type, public_id)]
        return {"result": "ok" if removed else "not found"}

    def _verify_basic_auth(self, headers: dict[str, str]) -> None:
        expected = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        if headers.get("authorization") != f"Basic {expected}":
            raise StandInError(401, "Invalid credentials")

    def handle_ping(self, headers: dict[str, str]) -> dict[str, Any]:
        self._verify_basic_auth(headers)
        return {"status": "ok"}

    def handle_resources(
        self, resource_type: str, access_type: str, query: dict[str, str], headers: dict[str, str]
    ) -> dict[str, Any]:
        self._verify_basic_auth(headers)
        prefix = query.get("prefix", "")
        page_size = min(int(query.get("max_results") or 10), 500)
        start = int(query.get("next_cursor") or 0)
        with self._lock:
            found = sorted(
                (asset for asset in self.assets.values() if asset.resource_type == resource_type),
                key=lambda asset: asset.public_id,
            )
        found = [asset for asset in found if asset.type == access_type and asset.public_id.startswith(prefix)]
        page = found[start : start + page_size]
        payload: dict[str, Any] = {
            "resources": [
                {
                    "public_id": asset.public_id,
                    "format": asset.format,
                    "resource_type": asset.resource_type,
                    "type": asset.type,
                    "bytes": len(asset.data),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(asset.created_at)),
                }
                for asset in page
            ]
        }
        if start + page_size < len(found):
            payload["next_cursor"] = str(start + page_size)
        return payload

    def find_delivery(self, path: str) -> Asset:
        match = re.fullmatch(
            rf"/{re.escape(self.cloud_name)}/(image|video)/(upload|authenticated|private)/"
            r"(?:(s--[A-Za-z0-9_-]+--)/)?(?:v\d+/)?(.+)\.([a-z0-9]+)",
            path,
        )
        if match is None:
            raise StandInError(404, "Resource not found")
        resource_type, access_type, signature, public_id, extension = match.groups()
        asset = self.asset(public_id, resource_type)
        if asset is None or asset.type != access_type:
            raise StandInError(404, "Resource not found")
        if access_type != "upload" and signature != self.url_signature(f"{public_id}.{extension}"):
            # Cloudinary answers 401 to an unsigned or wrongly signed URL of a protected asset.
            raise StandInError(401, "Unauthorized: this resource needs a signed URL")
        if extension != asset.format:
            raise StandInError(400, f"Originals only: asked for .{extension} of a {asset.format} file")
        return asset

    def find_download(self, resource_type: str, query: dict[str, str]) -> Asset:
        """The download API: every parameter signed, not expired, the asset of that access type."""
        self._verify_signed(query)
        expires_at = query.get("expires_at", "")
        if not expires_at.isdigit() or int(expires_at) <= time.time():
            raise StandInError(401, "This download link has expired")
        asset = self.asset(query.get("public_id", ""), resource_type)
        if asset is None or asset.type != (query.get("type") or "upload"):
            raise StandInError(404, "Resource not found")
        if query.get("format") and query["format"] != asset.format:
            raise StandInError(400, f"Originals only: asked for .{query['format']} of a {asset.format} file")
        return asset


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer
    protocol_version = "HTTP/1.1"

    @property
    def standin(self) -> CloudinaryStandIn:
        return self.server.standin  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: dict[str, Any], *, head: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:  # an answer to HEAD has no body, whatever its status
            self.wfile.write(body)

    def _fail(self, mode: str, *, head: bool = False) -> None:
        if mode == "timeout":
            # Never answer; the client's timeout fires. Released when the stand-in stops.
            self.standin._release.wait(timeout=60)
            self.close_connection = True
            return
        if mode == "error":
            self._send_json(500, {"error": {"message": "General Error (stand-in)"}}, head=head)
            return
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_POST(self) -> None:
        headers = self._headers()
        body = self._body()
        match = re.fullmatch(r"/v1_1/([^/]+)/(image|video|raw|auto)/(upload|destroy)", urlsplit(self.path).path)
        if match is None or match[1] != self.standin.cloud_name:
            self._send_json(404, {"error": {"message": f"Unknown endpoint {self.path}"}})
            return
        _, resource_type, action = match.groups()
        params, file = _parse_multipart(headers.get("content-type", ""), body)
        self.standin._record(action, resource_type, params, headers)
        time.sleep(self.standin.latency.get(action, 0))
        failure = self.standin._take_failure(action)
        if failure:
            self._fail(failure)
            return
        try:
            if action == "upload":
                payload = self.standin.handle_upload(resource_type, params, file, headers)
            else:
                payload = self.standin.handle_destroy(resource_type, params)
        except StandInError as e:
            self._send_json(e.status, {"error": {"message": e.message}})
            return
        self._send_json(200, payload)

    def do_GET(self) -> None:
        self._get(head=False)

    def do_HEAD(self) -> None:
        self._get(head=True)

    def _get(self, *, head: bool) -> None:
        headers = self._headers()
        target = urlsplit(self.path)
        path = unquote(target.path)
        query = {key: values[-1] for key, values in parse_qs(target.query).items()}
        api = re.fullmatch(
            rf"/v1_1/{re.escape(self.standin.cloud_name)}/(?:resources/(image|video)/(\w+)|(image|video)/download)",
            path,
        )
        if api is not None:
            self._api_get(api, query, headers, head=head)
            return
        if path == f"/v1_1/{self.standin.cloud_name}/ping":
            self.standin._record("ping", "", {}, headers)
            failure = self.standin._take_failure("ping")
            if failure:
                self._fail(failure, head=head)
                return
            try:
                self._send_json(200, self.standin.handle_ping(headers))
            except StandInError as e:
                self._send_json(e.status, {"error": {"message": e.message}})
            return
        self.standin._record("delivery", "", {"path": path, "method": "HEAD" if head else "GET"}, headers)
        failure = self.standin._take_failure("delivery")
        if failure:
            self._fail(failure, head=head)
            return
        try:
            asset = self.standin.find_delivery(path)
        except StandInError as e:
            body = e.message.encode()
            self.send_response(e.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return
        self._send_asset(asset, head=head)

    def _send_asset(self, asset: Asset, *, head: bool, attachment: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(asset.data)))
        if attachment:
            name = asset.public_id.rsplit("/", 1)[-1]
            self.send_header("Content-Disposition", f'attachment; filename="{name}.{asset.format}"')
        self.end_headers()
        if not head:
            self.wfile.write(asset.data)

    def _api_get(self, api: re.Match[str], query: dict[str, str], headers: dict[str, str], *, head: bool) -> None:
        listing_type, access_type, download_type = api.groups()
        action = "resources" if listing_type else "download"
        self.standin._record(action, listing_type or download_type, query, headers)
        failure = self.standin._take_failure(action)
        if failure:
            self._fail(failure, head=head)
            return
        try:
            if listing_type:
                self._send_json(200, self.standin.handle_resources(listing_type, access_type, query, headers))
                return
            asset = self.standin.find_download(download_type, query)
        except StandInError as e:
            self._send_json(e.status, {"error": {"message": e.message}})
            return
        self._send_asset(asset, head=head, attachment=query.get("attachment") in ("true", "True", "1"))


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """multipart/form-data as urllib3 encodes it: exact bytes, no line-ending games."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ValueError(f"Not multipart: {content_type!r}")
    delimiter = b"--" + match[1].encode()
    params: dict[str, str] = {}
    file: tuple[str, bytes] | None = None
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part[2:].partition(b"\r\n\r\n")
        content = content[:-2] if content.endswith(b"\r\n") else content
        disposition = next(
            (line for line in head.decode().split("\r\n") if line.lower().startswith("content-disposition")), ""
        )
        name = re.search(r'(?<![a-z])name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name is None:
            continue
        if filename is not None:
            file = (filename[1], content)
        else:
            params[name[1]] = content.decode()
    return params, file
