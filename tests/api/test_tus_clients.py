"""The tus server against the reference clients nobody here wrote: tuspy (Python) and
tus-js-client (under node), over a real HTTP server, including a resume after the connection
drops midway (a proxy that cuts it after so many bytes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from tusclient import client as tus_client

from tests.http_servers import CuttingProxy

API = "/api/v1"
TUS_JS_CLIENT = "tus-js-client@4.3.1"
NODE_CACHE = Path.home() / ".cache" / "konvrt-test-media" / "node-tus"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(live_server, redis_connection) -> dict[str, str]:
    key = requests.get(f"{live_server.url}{API}/session/", timeout=10).headers["X-Session-Key"]
    return {"X-Session-Key": key}


@pytest.fixture
def payload(tmp_path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    return path


def part_of(storage_root: Path, upload_url: str) -> Path:
    return storage_root / "tus" / str(uuid.UUID(upload_url.rstrip("/").rsplit("/", 1)[-1]))


def test_tuspy_uploads_in_chunks_and_the_upload_makes_an_operation(
    live_server, session, media, storage_root, run_worker
):
    png = media.png()
    tus = tus_client.TusClient(f"{live_server.url}{API}/uploads/", headers=session)
    uploader = tus.uploader(str(png), chunk_size=200, metadata={"filename": "photo.png"})
    uploader.upload()
    assert part_of(storage_root, uploader.url).read_bytes() == png.read_bytes()

    created = requests.post(
        f"{live_server.url}{API}/operations/",
        json={"operation": "image_resize", "parameters": {"width": 8}, "upload": uploader.url},
        headers=session,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"]["input_file"]["file_name"] == "photo.png"
    assert not part_of(storage_root, uploader.url).exists()  # consumed
    assert requests.head(uploader.url, headers={**session, "Tus-Resumable": "1.0.0"}, timeout=10).status_code == 404
    run_worker()
    operation = requests.get(
        f"{live_server.url}{API}/operations/{created.json()['data']['id']}/", headers=session, timeout=10
    ).json()["data"]
    assert operation["status"] == "completed", operation["error_message"]
    assert operation["output_file"]["metadata"]["width"] == 8


def test_tuspy_resumes_after_the_connection_drops_midway(live_server, session, payload, storage_root):
    proxy = CuttingProxy(int(live_server.url.rsplit(":", 1)[1]), cut_after=1_500_000)
    try:
        tus = tus_client.TusClient(proxy.url(f"{API}/uploads/"), headers=session)
        uploader = tus.uploader(
            str(payload), chunk_size=1024 * 1024, metadata={"filename": "big.bin"}, retries=5, retry_delay=0.2
        )
        uploader.upload()
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert part_of(storage_root, uploader.url).read_bytes() == payload.read_bytes()


@pytest.fixture(scope="session")
def tus_js_client() -> Path:
    """tus-js-client installed by npm into a cache outside the repository (once per machine)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run tus-js-client")
    module = NODE_CACHE / "node_modules" / "tus-js-client"
    if not (module / "package.json").exists():
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                "npm",
                "install",
                TUS_JS_CLIENT,
                "--no-audit",
                "--no-fund",
                "--no-package-lock",
                "--prefix",
                str(NODE_CACHE),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            pytest.skip(f"npm could not install {TUS_JS_CLIENT} (no registry?): {result.stderr[-300:]}")
    assert json.loads((module / "package.json").read_text())["version"] == TUS_JS_CLIENT.rsplit("@", 1)[1]
    return NODE_CACHE / "node_modules"


NODE_SCRIPT = """
const tus = require("tus-js-client");
const fs = require("fs");
const [endpoint, path, sessionKey] = process.argv.slice(2);
const upload = new tus.Upload(fs.readFileSync(path), {
  endpoint,
  chunkSize: 1024 * 1024,
  retryDelays: [0, 100, 300, 1000],
  metadata: { filename: "from-node.bin" },
  headers: { "X-Session-Key": sessionKey },
  onSuccess: () => { console.log(JSON.stringify({ url: upload.url })); },
  onError: (error) => { console.error(String(error)); process.exit(1); },
});
upload.start();
"""


def run_node(modules: Path, tmp_path: Path, endpoint: str, path: Path, session: dict[str, str]) -> str:
    script = tmp_path / "upload.js"
    script.write_text(NODE_SCRIPT)
    result = subprocess.run(
        ["node", str(script), endpoint, str(path), session["X-Session-Key"]],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["url"]


def test_tus_js_client_uploads(live_server, session, payload, storage_root, tus_js_client, tmp_path):
    url = run_node(tus_js_client, tmp_path, f"{live_server.url}{API}/uploads/", payload, session)
    assert part_of(storage_root, url).read_bytes() == payload.read_bytes()


def test_tus_js_client_resumes_after_the_connection_drops_midway(
    live_server, session, payload, storage_root, tus_js_client, tmp_path
):
    proxy = CuttingProxy(int(live_server.url.rsplit(":", 1)[1]), cut_after=2_200_000)
    try:
        url = run_node(tus_js_client, tmp_path, proxy.url(f"{API}/uploads/"), payload, session)
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert part_of(storage_root, url).read_bytes() == payload.read_bytes()
