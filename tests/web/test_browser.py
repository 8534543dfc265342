"""The page in real headless Chromium against the real server, a real worker and real media.

Each test also checks (in the fixtures) that the page asked nothing of another host and raised
no uncaught script error.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess

import pytest

from apps.operations.enums import OperationStatus
from apps.operations.models import Operation
from apps.processors.ffmpeg import resolve_ffmpeg_binary
from apps.processors.probe import probe_image, probe_media
from apps.processors.registry import OPERATIONS
from tests.processors.processes import wait_until
from tests.web.conftest import PHONE, browser_unavailable

try:
    from playwright import sync_api
except ImportError:
    browser_unavailable("Playwright for Python is not installed.", module_level=True)
expect = sync_api.expect
# Generous waits for state (a real encode on a busy two-core machine), never timing assertions.
expect.set_options(timeout=60_000)
PHONE_WIDTH = PHONE["width"]


def choose_file(page, path) -> None:
    page.set_input_files("#file-input", str(path))


def operation_titles(page) -> list[str]:
    return page.locator("#operation-choices .choice-title").all_inner_texts()


def wait_until_done(page) -> None:
    expect(page.locator("#processing-text")).to_have_text("Done.")
    page.wait_for_function("document.querySelector('#processing-progress').value === 100")
    expect(page.locator("#processing-percent")).to_have_text("100%")


def open_advanced(page) -> None:
    """The raw parameters are folded under "Advanced"."""
    if not page.evaluate("document.querySelector('#advanced').open"):
        page.click("#advanced summary")


def download_result(page, tmp_path):
    with page.expect_download() as download_info:
        page.click("#download-link")
    download = download_info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    return path


def first_file(page):
    return page.locator("#files-list .file-item").first


def test_resizing_an_image_shows_both_progress_bars_a_preview_and_downloads_the_result(web, worker, media, tmp_path):
    page = web.open()
    choose_file(page, media.png(width=64, height=64))

    expect(page.locator("#file-summary")).to_contain_text(".png")
    assert operation_titles(page) == ["Resize image", "Convert image"]
    expect(page.locator("#operation-image_resize")).to_be_checked()
    expect(page.locator("#parameters .group-note")).to_have_text("Give at least one of: width or height.")
    expect(page.locator("#param-maintain_aspect_ratio")).to_be_checked()
    page.fill("#param-width", "32")
    page.click("#start-button")

    page.wait_for_function("document.querySelector('#upload-progress').value === 100")
    expect(page.locator("#upload-text")).to_have_text("Uploaded")
    wait_until_done(page)
    page.wait_for_function("document.querySelector('#result-preview img')?.naturalWidth === 32")
    expect(page.locator("#result-sizes")).to_contain_text("→")
    expect(page.locator("#download-link")).to_contain_text(".png")

    result = download_result(page, tmp_path)
    image = probe_image(result, allowed_formats=("PNG",))
    assert (image.width, image.height) == (32, 32)

    expect(first_file(page).locator(".badge")).to_have_text("Completed")
    expect(first_file(page).get_by_role("link", name=re.compile("Download"))).to_be_visible()


def test_the_upload_shows_its_own_progress_and_can_be_stopped(web, media):
    page = web.open()
    # Slow the browser's uploads down so that the upload is seen in flight.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    conditions = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 64 * 1024}
    cdp.send("Network.emulateNetworkConditions", conditions)
    choose_file(page, media.video(duration=1.0, width=160, height=120, noisy=True))
    page.click("#start-button")

    expect(page.locator("#upload-text")).to_have_text(re.compile(r"^[1-9]\d?% of "))
    expect(page.locator("#start-button")).to_be_disabled()
    page.click("#abort-upload")

    expect(page.locator("#form-error")).to_have_text("The upload was stopped.")
    expect(page.locator("#job")).to_be_hidden()
    expect(page.locator("#start-button")).to_be_enabled()
    page.click("#files-refresh")
    expect(page.locator("#files-empty")).to_be_visible()


def test_polling_slows_down_in_a_hidden_tab_resumes_when_shown_and_stops_at_the_end(web, media):
    """No worker at first: the job waits in its queue while the page polls it. The page's timers
    run on Playwright's clock, which the test moves; the page records when (on that clock) each
    status poll started."""
    web.page.clock.install()
    # A browser without EventSource: the page polls (as it does when the server has no stream).
    web.page.add_init_script("delete window.EventSource;")
    web.page.add_init_script(RECORD_STATUS_POLLS)
    page = web.open()
    choose_file(page, media.jpeg())
    page.fill("#param-width", "16")
    page.click("#start-button")
    expect(page.locator("#processing-text")).to_contain_text("No image worker is running")

    page.evaluate(SET_VISIBILITY, True)
    page.clock.pause_at((page.evaluate("Date.now()") + 10) / 1000)  # (Python gives it seconds)
    hidden_from = len(status_polls(page))
    for _ in range(25):
        run_clock(page, 1_000)
    hidden = status_polls(page)[hidden_from:]
    # The poll already scheduled when the tab was hidden may still come; after it, one per 10 s.
    # Whatever was under way when the tab was hidden, each poll from then on waits 10 s for the next.
    assert len(hidden) >= 2, hidden
    assert all(later - earlier >= 10_000 for earlier, later in zip(hidden, hidden[1:], strict=False)), hidden

    page.evaluate(SET_VISIBILITY, False)
    shown_at = page.evaluate("Date.now()")
    run_clock(page, 1)
    assert len(status_polls(page)) == hidden_from + len(hidden) + 1
    assert status_polls(page)[-1] - shown_at <= 1  # at once, not at either pace

    page.click("#job-cancel")
    expect(page.locator("#processing-text")).to_have_text("Cancelled.")
    finished = len(status_polls(page))
    run_clock(page, 60_000)
    assert len(status_polls(page)) == finished


SET_VISIBILITY = """(hidden) => {
    Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event("visibilitychange"));
}"""
# The page's clock time at which each GET .../status/ started, and how many are still answering.
RECORD_STATUS_POLLS = """
window.statusPolls = [];
window.requestsInFlight = 0;
const fetchForReal = window.fetch;
window.fetch = function (resource, options) {
  const url = typeof resource === "string" ? resource : resource.url;
  if (url.endsWith("/status/")) window.statusPolls.push(Date.now());
  window.requestsInFlight += 1;
  return fetchForReal.call(this, resource, options).finally(() => { window.requestsInFlight -= 1; });
};
"""


def status_polls(page) -> list[int]:
    return page.evaluate("window.statusPolls")


def run_clock(page, milliseconds: int) -> None:
    """Move the page's paused clock, firing its timers, then wait for the requests they made."""
    page.clock.run_for(milliseconds)
    # Polled from here: the page's own timers (and animation frames) stand still.
    assert wait_until(lambda: page.evaluate("window.requestsInFlight") == 0, timeout=20, interval=0.02)


def test_compressing_a_video_plays_the_result_and_downloads_an_h264_mp4(web, worker, media, tmp_path):
    page = web.open()
    choose_file(page, media.video(duration=1.0, width=160, height=120))

    # (A server with more video operations offers them too, after these.)
    titles = operation_titles(page)
    assert [title for title in titles if title in {"Compress video", "Convert video", "Extract audio"}] == [
        "Compress video",
        "Convert video",
        "Extract audio",
    ]
    page.check("#operation-video_compress")
    open_advanced(page)
    page.select_option("#param-preset", label="ultrafast")
    expect(page.locator("#param-quality")).to_have_value("23")
    page.click("#start-button")

    wait_until_done(page)
    expect(page.locator("#result-preview video")).to_have_attribute("src", re.compile("download"))

    result = download_result(page, tmp_path)
    assert result.suffix == ".mp4"
    info = probe_media(result)
    assert info.video.codec == "h264"
    assert info.audio.codec == "aac"
    assert info.duration == pytest.approx(1.0, abs=0.3)


def test_a_job_that_fails_says_why_in_plain_words_and_offers_a_retry(web, worker, media, tmp_path):
    # Silence passes every check at upload (it is a valid WAV) and only the worker, measuring its
    # loudness, finds there is nothing to normalise. (A video without audio for audio_extract, the
    # earlier example, is now refused at upload.)
    silence = tmp_path / "silence.wav"
    subprocess.run(
        [resolve_ffmpeg_binary(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=44100", "-t", "2", str(silence)],
        check=True,
        timeout=60,
    )
    page = web.open()
    choose_file(page, silence)
    page.check("#operation-audio_normalize")
    page.click("#start-button")

    expect(page.locator("#processing-text")).to_have_text("Failed.")
    expect(page.locator("#job-error")).to_contain_text("silent")
    expect(page.locator("#job-retry")).to_be_visible()
    expect(page.locator("#job-cancel")).to_be_hidden()
    expect(page.locator("#result")).to_be_hidden()
    expect(first_file(page).locator(".badge")).to_have_text("Failed")
    expect(first_file(page).locator(".file-failure")).to_contain_text("silent")


def test_a_file_whose_content_is_not_what_its_name_says_is_rejected_with_a_sentence(web, media):
    page = web.open()
    choose_file(page, media.text(extension="png"))
    page.check("#operation-image_convert")
    page.select_option("#param-output_format", label="webp")
    page.click("#start-button")

    expect(page.locator("#file-error")).to_contain_text("Konvrt can't process this file.")
    expect(page.locator("#job")).to_be_hidden()
    expect(page.locator("#files-empty")).to_be_visible()


def test_a_file_over_the_size_limit_is_refused_by_the_api_and_then_by_the_page_itself(web, media, settings):
    page = web.open()
    # Lowered after the page has read the limits: only the API knows, and its 413 is explained.
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": 1000}
    choose_file(page, media.jpeg(width=640, height=360))
    page.fill("#param-width", "100")
    page.click("#start-button")
    expect(page.locator("#file-error")).to_have_text(
        "This file is too large. The limit for this operation is 1000 bytes."
    )
    expect(page.locator("#job")).to_be_hidden()

    # Once the page knows the limit it refuses before uploading anything.
    page.reload()
    page.wait_for_selector("main[data-ready='true']")
    choose_file(page, media.jpeg(width=640, height=360))
    expect(page.locator(".choice-meta").first).to_contain_text("files up to 1000 bytes")
    page.fill("#param-width", "100")
    uploads = []
    page.on("request", lambda request: uploads.append(request.url) if request.method == "POST" else None)
    page.click("#start-button")
    expect(page.locator("#file-error")).to_have_text(
        re.compile(r"^This file is too large: it is [\d.]+ KB and the limit for resize image is 1000 bytes\.$")
    )
    assert uploads == []


def test_a_file_type_no_operation_accepts_is_refused_before_uploading(web, media):
    page = web.open()
    choose_file(page, media.text(extension="txt"))

    expect(page.locator("#file-error")).to_contain_text("Konvrt can't process .txt files. It accepts mp4")
    expect(page.locator("#operation-fieldset")).to_be_hidden()
    expect(page.locator("#start-button")).to_be_disabled()


def test_settings_are_checked_and_the_apis_field_errors_appear_next_to_their_fields(web, media):
    page = web.open()
    choose_file(page, media.png())

    # Neither width nor height: the page says so itself, without uploading.
    page.click("#start-button")
    expect(page.locator("#param-width-error")).to_have_text("Enter at least one of these: width or height.")
    expect(page.locator("#param-width")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#job")).to_be_hidden()

    # Out of range: only the API judges that, and its message lands beside the field.
    page.fill("#param-width", "20000")
    page.click("#start-button")
    expect(page.locator("#form-error")).to_contain_text("Some settings need attention")
    expect(page.locator("#param-width-error")).to_contain_text("10000")
    expect(page.locator("#param-height-error")).to_be_hidden()
    expect(page.locator("#job")).to_be_hidden()

    # A required choice left open.
    page.check("#operation-image_convert")
    page.click("#start-button")
    expect(page.locator("#param-output_format-error")).to_have_text("Choose an output format.")


def test_cancel_retry_survive_a_reload_and_delete(web, media):
    """No worker runs here, so the job waits in its queue until it is cancelled."""
    page = web.open()
    choose_file(page, media.jpeg())
    page.check("#operation-image_convert")
    page.select_option("#param-output_format", label="png")
    page.click("#start-button")

    expect(page.locator("#processing-text")).to_contain_text("Queued")
    page.click("#job-cancel")
    expect(page.locator("#processing-text")).to_have_text("Cancelled.")
    expect(page.locator("#job-retry")).to_be_visible()
    expect(first_file(page).locator(".badge")).to_have_text("Cancelled")

    page.click("#job-retry")
    expect(page.locator("#processing-text")).to_contain_text("Queued")
    operation_id = re.search(r"#operation=(.+)$", page.url).group(1)

    # The session is the browser's cookie: after a reload the list and the open job are still there.
    page.reload()
    page.wait_for_selector("main[data-ready='true']")
    expect(page.locator("#job-title")).to_contain_text("Convert image")
    expect(page.locator("#processing-text")).to_contain_text("Queued")
    file_name = media.jpeg().name
    first_file(page).get_by_role("button", name=f"Cancel {file_name}").click()
    expect(first_file(page).locator(".badge")).to_have_text("Cancelled")
    expect(page.locator("#processing-text")).to_have_text("Cancelled.")

    page.once("dialog", lambda dialog: dialog.accept())
    first_file(page).get_by_role("button", name=f"Delete {file_name}").click()
    expect(page.locator("#files-empty")).to_be_visible()
    expect(page.locator("#job")).to_be_hidden()
    assert page.request.get(f"/api/v1/operations/{operation_id}/").status == 404


def test_the_page_takes_operation_titles_and_status_words_and_rules_from_the_api(web, media, monkeypatch):
    """Changed on the server (the live server runs in this process), the page follows."""
    renamed = dataclasses.replace(OPERATIONS["image_resize"], title="Shrink an image")
    monkeypatch.setitem(OPERATIONS, "image_resize", renamed)
    monkeypatch.setattr(OperationStatus, "retryable", classmethod(lambda cls: frozenset({cls.FAILED})))
    page = web.open()
    choose_file(page, media.png())

    assert operation_titles(page) == ["Shrink an image", "Convert image"]
    page.fill("#param-width", "16")
    page.click("#start-button")
    expect(page.locator("#job-title")).to_contain_text("Shrink an image: ")
    expect(page.locator("#processing-text")).to_contain_text("Queued")
    page.click("#job-cancel")
    expect(page.locator("#processing-text")).to_have_text("Cancelled.")
    # A cancelled operation is no longer retryable on this server: no Retry anywhere.
    expect(page.locator("#job-retry")).to_be_hidden()
    expect(first_file(page).locator(".badge")).to_have_text("Cancelled")
    expect(first_file(page).get_by_role("button", name=re.compile("^Retry"))).to_have_count(0)

    # An operation the page has no title for (gone from the registry) still reads as words.
    session_key = page.request.get("/api/v1/session/").json()["data"]["session_key"]
    Operation.objects.create(session_key=session_key, operation="video_sharpen", status=OperationStatus.FAILED)
    page.click("#files-refresh")
    expect(first_file(page).locator(".file-meta").first).to_contain_text("Video sharpen · ")


def test_a_dropped_file_is_taken_like_a_chosen_one(web, media):
    page = web.open()
    dropped = page.evaluate_handle(
        """(base64) => {
            const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return transfer;
        }""",
        base64.b64encode(media.png().read_bytes()).decode(),
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})

    expect(page.locator("#file-summary")).to_contain_text("dropped.png")
    assert operation_titles(page) == ["Resize image", "Convert image"]
    assert page.evaluate("document.querySelector('#file-input').files[0].name") == "dropped.png"


def test_my_files_pages_through_this_sessions_operations_and_opens_one(web, media, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "uploads": "100/hour"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    # Eleven waiting at once: more than a server's per-session fairness limit allows by default.
    settings.MAX_ACTIVE_PER_SESSION = 100
    page = web.open()
    # Created through the API with the page's own session cookie; oldest first.
    for number in range(11):
        response = page.request.post(
            "/api/v1/operations/",
            multipart={
                "operation": "image_resize",
                "parameters": json.dumps({"width": 10 + number}),
                "file": {"name": f"photo-{number:02}.png", "mimeType": "image/png", "buffer": media.png().read_bytes()},
            },
        )
        assert response.status == 201, response.text()

    page.click("#files-refresh")
    expect(page.locator("#files-list .file-name")).to_have_count(10)
    expect(page.locator("#files-list .file-name").first).to_have_text("photo-10.png")
    expect(page.locator("#files-page-info")).to_have_text("Page 1 of 2")
    expect(page.locator("#files-previous")).to_be_disabled()

    page.click("#files-next")
    expect(page.locator("#files-list .file-name")).to_have_text(["photo-00.png"])
    expect(page.locator("#files-page-info")).to_have_text("Page 2 of 2")
    expect(page.locator("#files-next")).to_be_disabled()

    page.get_by_role("button", name="Open photo-00.png").click()
    expect(page.locator("#job-title")).to_have_text("Resize image: photo-00.png")
    expect(page.locator("#processing-text")).to_contain_text("Queued")
    expect(page.locator("#job-heading")).to_be_focused()


def test_too_many_uploads_say_how_long_to_wait(web, media, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "uploads": "1/hour"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    page = web.open()
    choose_file(page, media.png())
    page.fill("#param-width", "16")
    page.click("#start-button")
    expect(page.locator("#processing-text")).to_contain_text("Queued")

    page.fill("#param-width", "24")
    page.click("#start-button")

    expect(page.locator("#form-error")).to_have_text(
        re.compile(r"^Too many requests from this browser\. Please wait (1 hour|60 minutes) and try again\.$")
    )
    expect(page.locator("#start-button")).to_be_disabled()
    expect(page.locator("#start-button")).to_contain_text("wait")


def test_the_limit_on_active_jobs_is_explained_in_the_api_s_own_words(web, media, settings):
    settings.MAX_ACTIVE_PER_SESSION = 1
    page = web.open()
    choose_file(page, media.png())
    page.fill("#param-width", "16")
    page.click("#start-button")
    expect(page.locator("#processing-text")).to_contain_text("Queued")  # no worker: it stays active

    page.fill("#param-width", "24")
    page.click("#start-button")

    expect(page.locator("#form-error")).to_have_text(
        "You already have 1 operation waiting or running, the most one session may have at once. "
        "Start another when one of them has finished."
    )
    expect(page.locator("#start-button")).to_be_disabled()
    expect(page.locator("#start-button")).to_contain_text("wait")


def test_error_sentences_for_every_kind_of_refusal(web):
    page = web.open()
    sentences = page.evaluate(
        """async () => {
            const { ApiError, describeError } = await import("/static/web/api.js");
            const say = (fields, context) => describeError(new ApiError(fields), context);
            return {
                tooLarge: say({ status: 413, code: "file_too_large" }, { limit: 25 * 1024 * 1024 }),
                unsupported: say({ status: 415, code: "unsupported_media", message: "This is not a PNG image" }),
                throttled: say({ status: 429, code: "throttled", retryAfter: 90 }),
                tooManyActive: say({
                    status: 429,
                    code: "throttled",
                    message: "You already have 3 operations waiting or running",
                    details: { active: 3, limit: 3, retry_after: 30 },
                    retryAfter: 30,
                }),
                unavailable: say({ status: 503, code: "service_unavailable" }),
                offline: say({ status: 0, code: "network_error" }),
                proxyPage: say({ status: 413, code: "file_too_large" }),
            };
        }"""
    )
    assert sentences == {
        "tooLarge": "This file is too large. The limit for this operation is 25 MB.",
        "unsupported": "Konvrt can't process this file. This is not a PNG image.",
        "throttled": "Too many requests from this browser. Please wait 2 minutes and try again.",
        "tooManyActive": "You already have 3 operations waiting or running.",
        "unavailable": (
            "Konvrt is temporarily unavailable because one of its services is not answering. "
            "Please try again in a minute."
        ),
        "offline": "Konvrt could not be reached. Check your connection and try again.",
        "proxyPage": "This file is too large for Konvrt.",
    }


def test_at_phone_width_the_page_fits_and_works_from_the_keyboard(phone, worker, media, tmp_path):
    # A long name with no place to break: the result's Download button once pushed a 390 px page to 446 px.
    photo = tmp_path / "holiday_photo_from_the_beach_at_sunset_IMG_20260712_184512.jpg"
    shutil.copy(media.jpeg(), photo)
    page = phone.open()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file-input"
    assert page.evaluate("getComputedStyle(document.querySelector('#drop-zone')).outlineStyle") == "solid"

    choose_file(page, photo)
    page.focus("#file-input")
    page.keyboard.press("Tab")
    if page.locator("#source-url").is_visible():  # a server that imports from links
        assert page.evaluate("document.activeElement.id") == "source-url"
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "operation-image_resize"
    page.keyboard.press("ArrowDown")  # radios move with the arrow keys
    expect(page.locator("#operation-image_convert")).to_be_checked()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "param-output_format"
    page.keyboard.type("webp")
    page.keyboard.press("Tab")
    # One control for size against quality, whatever the media; it moves the raw quality.
    assert page.evaluate("document.activeElement.id") == "quality-knob"
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#quality-knob-text")).to_have_text("Smaller file")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    page.keyboard.press("Enter")  # unfolds "Advanced"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "param-quality"
    expect(page.locator("#param-quality-value")).to_have_value("60")
    page.keyboard.press("ArrowLeft")  # the slider and its number box move together
    expect(page.locator("#param-quality-value")).to_have_value("59")
    page.focus("#start-button")
    page.keyboard.press("Enter")

    wait_until_done(page)
    expect(page.locator("#job-live")).not_to_have_text("")
    expect(page.locator("#download-link")).to_contain_text(".webp")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH
