"""The page's flows in real Chromium: the input described before choosing, one size-quality
control for every media type, a before/after comparison, several files at once and their ZIP,
keyboard alone, an accessibility audit (axe-core), and the second wave's endpoints (event
stream, tus, import from a link, presets), each used when the server has it.

Tests of an endpoint this server does not offer yet skip and say so (detected from the OpenAPI
schema, or tus's OPTIONS answer), so they run as soon as it is there.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import re
import shutil
import threading
import zipfile
from collections.abc import Iterator

import pytest

from apps.operations.enums import FileType
from apps.operations.models import Operation
from tests.web.axe import audit
from tests.web.conftest import PHONE, BrowserPage, PatchCutter, browser_unavailable
from tests.web.test_browser import RECORD_STATUS_POLLS, choose_file, open_advanced, wait_until_done

try:
    from playwright import sync_api
except ImportError:
    browser_unavailable("Playwright for Python is not installed.", module_level=True)
expect = sync_api.expect
expect.set_options(timeout=60_000)


# --- what this server offers -----------------------------------------------------------------
def api_schema(page) -> dict:
    response = page.request.get("/api/schema/?format=json")
    assert response.ok, response.status
    return response.json()


def require_path(page, path: str, what: str) -> None:
    if path not in api_schema(page)["paths"]:
        pytest.skip(f"This server has no {path} ({what}) yet: the page falls back without it.")


def create_fields(page) -> set[str]:
    schemas = api_schema(page)["components"]["schemas"]
    return {
        field
        for name, component in schemas.items()
        if name.startswith("OperationCreate")
        for field in component.get("properties", {})
    }


def require_tus(page) -> None:
    answer = page.request.fetch("/api/v1/uploads/", method="OPTIONS")
    if not (answer.ok and answer.headers.get("tus-version")):
        pytest.skip("This server has no tus endpoint at /api/v1/uploads/ yet: the page uploads in one request.")


def drop(page, files: list[tuple[str, bytes, str]]) -> None:
    """Drops files on the drop zone the way a person's drag and drop does."""
    import base64

    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, data, type] of files) {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type }));
            }
            return transfer;
        }""",
        [[name, base64.b64encode(data).decode(), kind] for name, data, kind in files],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


MOVE_RANGE = "(node, value) => { node.value = value; node.dispatchEvent(new Event('input', { bubbles: true })); }"


def slide(page, selector: str, value: int) -> None:
    """Moves a range input as a drag does: its value, then an input event."""
    page.eval_on_selector(selector, MOVE_RANGE, str(value))


def set_knob(page, level: int) -> None:
    slide(page, "#quality-knob", level)


# --- before choosing ---------------------------------------------------------------------------
def test_a_picked_file_is_described_and_previewed_before_choosing(web, media):
    page = web.open()
    choose_file(page, media.png(width=64, height=48))
    expect(page.locator("#file-summary")).to_have_text(re.compile(r": Image · PNG · 64×48 · [\d.]+ (bytes|KB)$"))
    page.wait_for_function("document.querySelector('#input-preview img')?.naturalWidth === 64")

    # A format Konvrt does not write (a BMP) is most likely to be converted: that comes first.
    choose_file(page, media.bmp())
    expect(page.locator("#operation-image_convert")).to_be_checked()
    assert page.locator("#operation-choices .choice-title").all_inner_texts()[:2] == ["Convert image", "Resize image"]

    choose_file(page, media.video(duration=1.0, width=160, height=120))
    expect(page.locator("#file-summary")).to_have_text(re.compile(r": Video · MP4 · 160×120 · 1\.\d s · [\d.]+ KB$"))
    expect(page.locator("#input-preview video")).to_be_visible()
    expect(page.locator("#input-preview img")).to_have_count(0)


def test_smaller_file_better_quality_runs_the_same_way_for_every_media_type(web, media):
    """Left is a smaller file and right better quality, whether the knob underneath is a video's
    CRF (lower is better), an image's quality (higher is better) or an audio bitrate."""
    page = web.open()
    choose_file(page, media.video(duration=1.0, width=160, height=120))
    page.check("#operation-video_compress")
    # The raw parameters are folded under "Advanced", in words people use.
    expect(page.locator("#param-preset")).to_be_hidden()
    open_advanced(page)
    expect(page.locator("label[for='param-preset']")).to_have_text("Encoding speed")
    expect(page.locator("label[for='param-audio_bitrate']")).to_have_text("Audio bitrate")
    seen = {}
    for level in (0, 2, 4):
        set_knob(page, level)
        seen[level] = (page.input_value("#param-quality-value"), page.input_value("#param-audio_bitrate"))
    assert seen == {0: ("28", "0"), 2: ("23", "2"), 4: ("18", "6")}  # enum indexes: 64k, 128k, 320k
    expect(page.locator("#quality-knob-text")).to_have_text("Best quality")

    choose_file(page, media.png())
    page.check("#operation-image_convert")
    # What must be chosen stays in view.
    expect(page.locator("#parameters #param-output_format")).to_be_visible()
    page.select_option("#param-output_format", label="webp")
    qualities = []
    for level in range(5):
        set_knob(page, level)
        qualities.append(int(page.input_value("#param-quality-value")))
    assert qualities == sorted(qualities) and qualities[2] == 85 and qualities[-1] == 100

    choose_file(page, media.audio(duration=2.0))
    page.check("#operation-audio_convert")
    page.select_option("#param-output_format", label="mp3")
    set_knob(page, 0)
    expect(page.locator("#param-bitrate option:checked")).to_have_text("64k")
    set_knob(page, 4)
    expect(page.locator("#param-bitrate option:checked")).to_have_text("320k")
    # An estimate only where it is honest: a constant bitrate over the known duration.
    expect(page.locator("#quality-estimate")).to_have_text("Estimated size: about 78.1 KB.")
    page.select_option("#param-output_format", label="flac")
    expect(page.locator("#quality-estimate")).to_have_text("")


# --- after -------------------------------------------------------------------------------------
def test_an_image_result_is_compared_with_its_original_and_listed_with_a_thumbnail(web, worker, media):
    page = web.open()
    choose_file(page, media.png(width=64, height=64))
    page.fill("#param-width", "32")
    page.click("#start-button")
    wait_until_done(page)

    page.wait_for_function("document.querySelector('#result-preview .compare-after')?.naturalWidth === 32")
    page.wait_for_function("document.querySelector('#result-preview .compare-before')?.naturalWidth === 64")
    slide(page, "#compare-slider", 80)
    assert page.evaluate("document.querySelector('.compare').style.getPropertyValue('--split')") == "80%"
    expect(page.locator("#compare-slider")).to_have_attribute("aria-valuetext", "80% original, 20% result")

    item = page.locator("#files-list .file-item").first
    page.wait_for_function("document.querySelector('#files-list .file-thumb img')?.naturalWidth === 32")
    expect(item.locator(".file-meta").first).to_contain_text(
        re.compile(r"PNG result [\d.]+ (bytes|KB) \(\d+% smaller\)")
    )


# --- several files at once ---------------------------------------------------------------------
def test_several_files_dropped_at_once_are_each_their_own_job_and_zip_together(web, worker, media, tmp_path):
    page = web.open()
    sources = {f"photo-{n}.png": media.png(width=40 + 8 * n, height=40).read_bytes() for n in range(3)}
    drop(page, [(name, data, "image/png") for name, data in sources.items()])
    expect(page.locator("#file-summary")).to_have_text(re.compile(r"^3 files, .* each becomes its own job\.$"))
    expect(page.locator("#input-list li")).to_have_count(3)
    page.fill("#param-width", "16")
    expect(page.locator("#start-button")).to_have_text("Start 3 jobs")
    page.click("#start-button")

    items = page.locator("#batch-list .batch-item")
    expect(items).to_have_count(3)
    expect(page.locator("#batch-summary")).to_have_text("All 3 finished.")
    for name in sources:
        item = page.locator(f"#batch-list .batch-item[data-file-name='{name}']")
        expect(item.locator(".batch-result a")).to_contain_text("Download")
        expect(item.locator(".batch-progress")).to_have_js_property("value", 100)
    operations = list(Operation.objects.order_by("created_at"))
    assert [op.files.get(file_type=FileType.INPUT).file_name for op in operations] == list(sources)

    page.click("#files-refresh")
    expect(page.locator("#files-zip")).to_be_enabled()
    with page.expect_download() as download_info:
        page.click("#files-zip")
    download = download_info.value
    assert download.suggested_filename == "konvrt-results.zip"
    archive_path = tmp_path / "results.zip"
    download.save_as(archive_path)
    with zipfile.ZipFile(archive_path) as archive:
        assert archive.testzip() is None  # every CRC right
        names = sorted(archive.namelist())
        assert len(names) == 3 and all(name.endswith(".png") for name in names)
        for op in operations:
            expected = page.request.get(f"/api/v1/operations/{op.id}/download/").body()
            name = page.request.get(f"/api/v1/operations/{op.id}/").json()["data"]["output_file"]["file_name"]
            assert archive.read(name) == expected
    expect(page.locator("#files-zip-status")).to_have_text(re.compile(r"^ZIP of 3 results ready"))

    # One file started next takes the place of the list.
    choose_file(page, media.png())
    page.fill("#param-width", "16")
    page.click("#start-button")
    expect(page.locator("#batch")).to_be_hidden()
    expect(page.locator("#job")).to_be_visible()


# --- following a job ---------------------------------------------------------------------------
def test_the_page_polls_when_the_event_stream_fails(web, worker, media):
    web.page.route("**/events/", lambda route: route.abort())
    web.page.add_init_script(RECORD_STATUS_POLLS)
    page = web.open()
    choose_file(page, media.png())
    page.fill("#param-width", "16")
    page.click("#start-button")
    wait_until_done(page)
    expect(page.locator("#job")).to_have_attribute("data-transport", "polling")
    assert page.evaluate("window.statusPolls.length") >= 1


def test_the_page_follows_a_job_through_the_event_stream(web, worker, media):
    page = web.open()
    require_path(page, "/api/v1/operations/{id}/events/", "the live progress stream")
    page.add_init_script(RECORD_STATUS_POLLS)
    page.reload()
    page.wait_for_selector("main[data-ready='true']")
    choose_file(page, media.video(duration=1.0, width=160, height=120))
    page.check("#operation-video_compress")
    page.click("#start-button")
    wait_until_done(page)
    expect(page.locator("#job")).to_have_attribute("data-transport", "stream")
    assert page.evaluate("window.statusPolls") == []


# --- big files and links -----------------------------------------------------------------------
def test_a_large_file_goes_through_tus_and_resumes_after_the_connection_drops(web, worker, media):
    page = web.open()
    require_tus(page)
    source = media.video(duration=1.0, width=160, height=120, noisy=True)
    chunk = 32 * 1024
    assert source.stat().st_size > 4 * chunk
    # Everything counts as large here, in small chunks, so that the upload can be cut midway.
    page.evaluate(
        f"Object.assign(document.querySelector('main').dataset, {{tusThreshold: '1', tusChunkSize: '{chunk}'}})"
    )
    cut = PatchCutter(3)
    page.route("**/api/v1/uploads/**", cut)
    patches, dropped = cut.patches, cut.dropped
    multipart_posts: list[str] = []
    page.on(
        "request",
        lambda r: (
            multipart_posts.append(r.url)
            if r.method == "POST" and "multipart/form-data" in (r.headers.get("content-type") or "")
            else None
        ),
    )
    choose_file(page, source)
    page.check("#operation-video_compress")
    page.click("#start-button")
    wait_until_done(page)

    assert dropped and dropped[0] > 0
    # After the drop the upload went on from the server's offset, not from zero.
    assert patches.count(0) == 1
    assert patches == sorted(patches)
    assert multipart_posts == []
    operation = Operation.objects.get()
    assert operation.files.get(file_type=FileType.INPUT).file_size == source.stat().st_size


@pytest.fixture
def source_server(media, tmp_path) -> Iterator[str]:
    """A plain HTTP server on this machine with one PNG to import."""
    shutil.copy(media.png(width=48, height=48), tmp_path / "sunset.png")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, format, *args) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # shutdown() waits a poll
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sunset.png"
    server.shutdown()
    thread.join()


def allow_loopback(settings) -> None:
    """Lets the outbound guard reach the local source server, whatever form the setting takes."""
    current = getattr(settings, "OUTBOUND_ALLOWED_NETWORKS", ())
    network = ipaddress.ip_network("127.0.0.0/8")
    if isinstance(current, str):
        settings.OUTBOUND_ALLOWED_NETWORKS = ",".join(filter(None, [current, str(network)]))
    elif any(isinstance(item, str) for item in current):
        settings.OUTBOUND_ALLOWED_NETWORKS = type(current)([*current, str(network)])
    else:
        settings.OUTBOUND_ALLOWED_NETWORKS = type(current)([*current, network])


def test_a_file_from_a_link_is_fetched_by_the_server(web, worker, source_server, settings):
    page = web.open()
    if "source_url" not in create_fields(page):
        pytest.skip("This server's create request has no source_url yet: the page hides the link field.")
    allow_loopback(settings)
    expect(page.locator("#source-url")).to_be_visible()
    page.fill("#source-url", source_server)
    expect(page.locator("#operation-image_resize")).to_be_checked()
    page.fill("#param-width", "24")
    page.click("#start-button")
    wait_until_done(page)
    expect(page.locator("#download-link")).to_contain_text(".png")
    assert Operation.objects.get().files.get(file_type=FileType.INPUT).file_name == "sunset.png"


# --- presets -----------------------------------------------------------------------------------
def test_presets_come_first_and_fill_in_the_advanced_settings(web, media):
    page = web.open()
    require_path(page, "/api/v1/presets/", "presets")
    presets = page.request.get("/api/v1/presets/").json()["data"]
    video_ops = {"video_compress", "video_convert", "video_trim", "video_thumbnail", "video_to_gif", "audio_extract"}
    # One with a target size when there is one (Discord's, email's).
    video_presets = [p for p in presets if p["operation"] in video_ops]
    preset = next((p for p in video_presets if "target_size_mb" in p["parameters"]), video_presets[0])
    choose_file(page, media.video(duration=1.0, width=160, height=120))

    expect(page.locator("#preset-group")).to_be_visible()
    first_radio = page.locator("#operation-fieldset input[type=radio]").first
    expect(first_radio).to_have_attribute("id", re.compile(r"^preset-"))
    page.check(f"#preset-{preset['name']}")
    if "target_size_mb" in preset["parameters"]:
        # The target decides the quality: the size-quality control steps aside and says so.
        expect(page.locator("#quality-knob")).to_be_disabled()
        expect(page.locator("#quality-knob-text")).to_have_text("Set by the target size")
        expect(page.locator("#quality-estimate")).to_contain_text("at most")
    open_advanced(page)
    for name, value in preset["parameters"].items():
        field = page.locator(f"#param-{name}-value, select#param-{name}, input#param-{name}").first
        if field.count() and field.evaluate("node => node.tagName") != "SELECT":
            expect(field).to_have_value(str(value))
    page.click("#start-button")
    expect(page.locator("#processing-text")).to_contain_text("Queued")
    operation = Operation.objects.get()
    assert operation.operation == preset["operation"]
    assert preset["parameters"].items() <= operation.parameters.items()
    page.click("#job-cancel")
    expect(page.locator("#processing-text")).to_have_text("Cancelled.")


def test_what_the_server_does_not_offer_is_left_out_of_the_page(web, media):
    page = web.open()
    presets = page.request.get("/api/v1/presets/").ok
    links = "source_url" in create_fields(page)
    choose_file(page, media.png())
    expect(page.locator("#operation-image_resize")).to_be_checked()
    if not presets:
        expect(page.locator("#preset-group")).to_be_hidden()
    if not links:
        expect(page.locator("#link-field")).to_be_hidden()
    else:
        expect(page.locator("#link-field")).to_be_visible()


# --- widths, keyboard, screen readers ----------------------------------------------------------
def test_the_whole_flow_works_from_the_keyboard_alone(web, worker, media, tmp_path):
    page = web.open()
    # Playwright intercepts file choosers once something listens for them, and turns that on
    # asynchronously: listening from here, before the key presses, not only when the Space below
    # is pressed (once, in a CI run, the press reached Chromium first and no chooser event came).
    page.on("filechooser", lambda chooser: None)
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file-input"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(media.png(width=64, height=64)))
    expect(page.locator("#operation-image_resize")).to_be_checked()

    def tab_to(selector: str, limit: int = 25) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => document.activeElement?.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#param-width")
    page.keyboard.type("32")
    tab_to("#start-button")
    page.keyboard.press("Enter")
    wait_until_done(page)
    expect(page.locator("#job-live")).to_have_text("Done. The result is ready to download.")
    tab_to("#compare-slider")
    page.keyboard.press("End")
    expect(page.locator("#compare-slider")).to_have_value("100")
    tab_to("#download-link")
    with page.expect_download() as download_info:
        page.keyboard.press("Enter")
    assert download_info.value.suggested_filename.endswith(".png")


def test_accessibility_audit_finds_nothing_serious_on_the_main_views(browser, live_server, worker, media):
    for viewport, scheme in ((PHONE, "dark"), ({"width": 1280, "height": 900}, "light")):
        web = BrowserPage(browser, live_server.url, viewport)
        try:
            web.page.emulate_media(color_scheme=scheme)
            page = web.open()
            views = {"empty": audit(page)}
            choose_file(page, media.video(duration=1.0, width=160, height=120))
            page.check("#operation-video_compress")
            open_advanced(page)
            views["settings"] = audit(page)
            choose_file(page, media.png(width=64, height=64))
            page.fill("#param-width", "32")
            page.click("#start-button")
            wait_until_done(page)
            page.wait_for_function("document.querySelector('#files-list .file-thumb img')?.complete")
            views["result"] = audit(page)
            if scheme == "light":  # (the list of several files, once: it has no colours of its own)
                drop(page, [(f"p{n}.png", media.png().read_bytes(), "image/png") for n in range(2)])
                page.fill("#param-width", "16")
                page.click("#start-button")
                expect(page.locator("#batch-summary")).to_have_text("All 2 finished.")
                views["several files"] = audit(page)
            assert {view: found for view, found in views.items() if found} == {}, json.dumps(views, indent=1)
            # The audit does see what it is meant to: an unlabelled field is a critical finding.
            page.evaluate("document.querySelector('main').append(document.createElement('input'))")
            assert "label" in {violation["id"] for violation in audit(page)}
            assert web.page_errors == []
            assert web.external_requests == []
        finally:
            web.close()
