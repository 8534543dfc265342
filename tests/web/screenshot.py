"""Makes the README's and docs/web.md's pictures of the page in use, at a laptop's width (1280 px,
docs/screenshot-desktop.png) and a phone's (390 px, docs/screenshot-phone.png). Not part of the
suite (the file name does not match test_*.py); run it on purpose:

    .venv/bin/python -m pytest tests/web/screenshot.py

It drives the real page like the browser tests do: a video compressed, then a photo resized, its
result compared with the original.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.web.conftest import PHONE, BrowserPage
from tests.web.test_browser import choose_file, open_advanced, wait_until_done

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize(
    ("name", "viewport"),
    [("screenshot-desktop.png", {"width": 1280, "height": 900}), ("screenshot-phone.png", PHONE)],
)
def test_readme_screenshot(browser, live_server, transactional_db, worker, media, tmp_path, name, viewport):
    # Names a person would upload, rather than the generated samples' hashes.
    video, photo = tmp_path / "holiday.mp4", tmp_path / "beach.jpg"
    shutil.copy(media.video(duration=1.0, width=160, height=120), video)
    shutil.copy(media.jpeg(width=640, height=360), photo)
    web = BrowserPage(browser, live_server.url, viewport)
    try:
        page = web.open()
        choose_file(page, video)
        page.check("#operation-video_compress")
        open_advanced(page)
        page.select_option("#param-preset", label="ultrafast")
        page.click("#start-button")
        wait_until_done(page)

        choose_file(page, photo)
        page.fill("#param-width", "320")
        page.click("#start-button")
        wait_until_done(page)
        page.wait_for_function("document.querySelector('#result-preview .compare-after')?.naturalWidth === 320")
        page.wait_for_function("[...document.querySelectorAll('#files-list img')].every((i) => i.complete)")
        page.mouse.move(0, 0)

        DOCS.mkdir(exist_ok=True)
        path = DOCS / name
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    finally:
        web.close()
