"""Uppy, the upload widget many sites will point at our tus endpoint, in a real browser.

Uppy Core with its Tus plugin (not our page, which uses tus-js-client directly) uploads a real
video in small chunks to /api/v1/uploads/ on the live server; the upload then makes an operation.
A second test drops the connection midway and checks that Uppy carries on from the server's offset.

Uppy's browser bundle comes from ``npm pack`` of a pinned version, checked against its sha256 and
cached outside the repository (never committed), as tests/api/test_tus_clients.py does for
tus-js-client.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest
import requests

from tests.web.conftest import PatchCutter, browser_unavailable

API = "/api/v1"
UPPY = "uppy@6.0.1"
# sha256 of the tarball ``npm pack uppy@6.0.1`` fetches; a different one is not the release pinned here.
UPPY_TARBALL_SHA256 = "2635f034972f7e492a2b51cc447cf408587cdf916844232010bb7d46ab09ef70"
UPPY_CACHE = Path.home() / ".cache" / "konvrt-test-media" / "uppy"
CHUNK_SIZE = 256 * 1024

pytestmark = pytest.mark.django_db(transaction=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def uppy_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/uppy.min.js of the pinned release: the standalone build that sets ``globalThis.Uppy``
    (``Uppy.Uppy``, ``Uppy.Tus``...). The tarball is fetched once per machine; under CI a failure
    to fetch it fails the tests rather than skipping them."""
    tarball = UPPY_CACHE / f"{UPPY.replace('@', '-')}.tgz"
    if not tarball.exists():
        if shutil.which("npm") is None:
            browser_unavailable(f"npm is needed to fetch {UPPY}.")
        UPPY_CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=UPPY_CACHE) as download:
            result = subprocess.run(
                ["npm", "pack", UPPY, "--pack-destination", download],
                capture_output=True,
                text=True,
                timeout=180,
            )
            if result.returncode != 0:
                browser_unavailable(f"npm could not fetch {UPPY} (no registry?): {result.stderr[-300:]}")
            fetched = Path(download) / tarball.name
            assert _sha256(fetched) == UPPY_TARBALL_SHA256, f"{UPPY} is not the release this test pins"
            fetched.replace(tarball)
    assert _sha256(tarball) == UPPY_TARBALL_SHA256, f"the cached {tarball} is not the release this test pins"
    bundle = tmp_path_factory.mktemp("uppy") / "uppy.min.js"
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/dist/uppy.min.js")
        assert member is not None
        bundle.write_bytes(member.read())
    return bundle


@pytest.fixture
def session(live_server) -> dict[str, str]:
    """A session of its own, as a site embedding Uppy gets one: its server asks for a key."""
    key = requests.get(f"{live_server.url}{API}/session/", timeout=10).headers["X-Session-Key"]
    return {"X-Session-Key": key}


@pytest.fixture
def uppy_page(web, uppy_bundle, session):
    """Our origin's page with Uppy loaded and a file input a person would pick the file with.

    Uppy sends the session in the ``X-Session-Key`` header (its Tus plugin's ``headers``), the way
    the docs tell a site that embeds it to; that header wins over the page's own session cookie, so
    the upload belongs to ``session``. The page is only a same-origin host for the script: the
    BrowserPage refuses requests to any other host."""
    page = web.open()
    page.add_script_tag(path=str(uppy_bundle))
    assert page.evaluate("typeof Uppy.Uppy === 'function' && typeof Uppy.Tus === 'function'")
    page.evaluate(
        """() => {
            const input = document.createElement("input");
            input.type = "file";
            input.id = "uppy-file";
            document.body.append(input);
        }"""
    )
    return page


UPLOAD_WITH_UPPY = """async ({endpoint, sessionKey, chunkSize}) => {
    const picked = document.querySelector("#uppy-file").files[0];
    const uppy = new Uppy.Uppy({ autoProceed: false }).use(Uppy.Tus, {
        endpoint,
        chunkSize,
        retryDelays: [0, 200, 500, 1000],
        headers: { "X-Session-Key": sessionKey },
    });
    const uploadURLs = [];
    uppy.on("upload-success", (file, response) => uploadURLs.push(response.uploadURL));
    uppy.addFile({ name: picked.name, type: picked.type, data: picked });
    const result = await uppy.upload();
    return {
        successful: result.successful.map((file) => file.uploadURL),
        uploadURLs,
        failed: result.failed.map((file) => String(file.error)),
    };
}"""


def upload_with_uppy(page, live_server, session: dict[str, str], source: Path) -> str:
    page.set_input_files("#uppy-file", str(source))
    result = page.evaluate(
        UPLOAD_WITH_UPPY,
        {
            "endpoint": f"{live_server.url}{API}/uploads/",
            "sessionKey": session["X-Session-Key"],
            "chunkSize": CHUNK_SIZE,
        },
    )
    assert result["failed"] == []
    assert len(result["successful"]) == 1
    # What the docs' example takes from the "upload-success" event, and the file's own uploadURL.
    assert result["uploadURLs"] == result["successful"]
    return result["successful"][0]


def part_of(storage_root: Path, upload_url: str) -> Path:
    return storage_root / "tus" / str(uuid.UUID(upload_url.rstrip("/").rsplit("/", 1)[-1]))


def assert_finished(upload_url: str, session: dict[str, str], storage_root: Path, source: Path) -> None:
    head = requests.head(upload_url, headers={**session, "Tus-Resumable": "1.0.0"}, timeout=10)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(source.stat().st_size)
    assert part_of(storage_root, upload_url).read_bytes() == source.read_bytes()


@pytest.fixture
def video(media) -> Path:
    """A real video of a few MB: a dozen chunks or more at CHUNK_SIZE."""
    source = media.video(duration=2.0, width=320, height=240, noisy=True)
    assert source.stat().st_size > 8 * CHUNK_SIZE
    return source


def test_uppy_uploads_a_video_in_chunks_and_the_upload_makes_an_operation(
    uppy_page, live_server, session, video, storage_root
):
    patches: list[int] = []
    uppy_page.on(
        "request",
        lambda r: patches.append(int(r.headers.get("upload-offset", "-1"))) if r.method == "PATCH" else None,
    )
    upload_url = upload_with_uppy(uppy_page, live_server, session, video)

    assert upload_url.startswith(f"{live_server.url}{API}/uploads/")
    assert len(patches) == -(-video.stat().st_size // CHUNK_SIZE)
    assert_finished(upload_url, session, storage_root, video)
    created = requests.post(
        f"{live_server.url}{API}/operations/",
        json={"operation": "video_compress", "parameters": {"quality": 26}, "upload": upload_url},
        headers=session,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"]["input_file"]["file_size"] == video.stat().st_size
    assert not part_of(storage_root, upload_url).exists()  # consumed by the operation


def test_uppy_resumes_from_the_servers_offset_after_the_connection_drops(
    uppy_page, live_server, session, video, storage_root
):
    # The fourth PATCH never reaches the server (the connection is reset), after three chunks were stored.
    cut = PatchCutter(4)
    uppy_page.route("**/api/v1/uploads/**", cut)
    methods, patches, dropped = cut.methods, cut.patches, cut.dropped
    upload_url = upload_with_uppy(uppy_page, live_server, session, video)

    assert dropped == [3 * CHUNK_SIZE]
    # After the drop Uppy asked the server where it got to, then went on from there, not from zero.
    after_the_drop = methods[methods.index("PATCH") + 4 :]
    assert after_the_drop[0] == "HEAD"
    assert patches.count(0) == 1
    assert patches == sorted(patches)
    assert patches[4] == dropped[0]
    assert_finished(upload_url, session, storage_root, video)
