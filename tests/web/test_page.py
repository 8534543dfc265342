"""The page and its assets are served by Django and WhiteNoise with DEBUG off, self-contained."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from django.conf import settings

WEB_APP = Path(__file__).resolve().parents[2] / "apps" / "web"
MODULE_IMPORT = re.compile(r'from "\./([\w-]+\.js)"')


def test_page_and_every_asset_it_loads_are_served_with_debug_off(client):
    assert settings.DEBUG is False  # what production runs with: no runserver static serving

    page = client.get("/")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-api-root="/api/v1/"' in html
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert sorted(assets) == ["/static/web/app.js", "/static/web/style.css"]
    modules = set(MODULE_IMPORT.findall((WEB_APP / "static" / "web" / "app.js").read_text()))
    for module in list(modules):
        modules |= set(MODULE_IMPORT.findall((WEB_APP / "static" / "web" / module).read_text()))
    for url in assets + [f"/static/web/{module}" for module in sorted(modules)]:
        response = client.get(url)
        assert response.status_code == 200, url
        expected = "text/css" if url.endswith(".css") else "text/javascript"
        assert response["Content-Type"].startswith(expected), url


def test_page_asks_nothing_of_other_hosts():
    """No CDN, web font or analytics: the page works on a machine without internet access."""
    sources = [WEB_APP / "templates" / "web" / "index.html", *sorted((WEB_APP / "static").rglob("*.*"))]
    for source in sources:
        text = source.read_text()
        assert not re.search(r"(https?:)?//[\w.-]+\.\w", text), source
        assert "@import" not in text and "url(http" not in text, source


def test_the_vendored_tus_client_is_the_pinned_build_with_its_licence():
    """`make web-vendor` fetches it (npm pack) and checks the same sha256; the copy must match."""
    script = (WEB_APP.parents[1] / "scripts" / "vendor_web.sh").read_text()
    pinned = re.search(r"^BUILD_SHA256=([0-9a-f]{64})$", script, re.MULTILINE)
    assert pinned is not None
    vendor = WEB_APP / "static" / "web" / "vendor"
    assert hashlib.sha256((vendor / "tus.min.js").read_bytes()).hexdigest() == pinned.group(1)
    assert "MIT License" in (vendor / "tus-js-client.LICENSE").read_text()
