"""Makes docs/screenshot.png, docs/web.md's picture of the page in use. Not part of the suite
(the file name does not match test_*.py); run it on purpose:

    .venv/bin/python -m pytest tests/web/screenshot.py

It drives the real page like the browser tests do: a video compressed, an image resized, the
result of the second one on screen.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.web.test_browser import choose_file, open_advanced, wait_until_done

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"


def test_readme_screenshot(web, worker, media, tmp_path):
    # Names a person would upload, rather than the generated samples' hashes.
    video, photo = tmp_path / "holiday.mp4", tmp_path / "beach.jpg"
    shutil.copy(media.video(duration=1.0, width=160, height=120), video)
    shutil.copy(media.jpeg(width=640, height=360), photo)
    page = web.open()
    page.set_viewport_size({"width": 900, "height": 1000})
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
    page.wait_for_function("document.querySelector('#result-preview img')?.naturalWidth === 320")
    page.mouse.move(0, 0)

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
