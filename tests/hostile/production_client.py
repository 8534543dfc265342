"""Run with production settings in a fresh interpreter (``python -m tests.hostile.production_client``):
makes a few requests through Django's test client over HTTPS and prints what came back as JSON on
stdout. Logs go to stderr, where the test reads them too."""

from __future__ import annotations

import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
django.setup()

from django.contrib.sessions.models import Session  # noqa: E402
from django.test import Client  # noqa: E402

from apps.operations import selectors  # noqa: E402


def main() -> None:
    client = Client(HTTP_HOST="konvrt.example.com")
    results = {}
    for name, path in (("health", "/api/v1/health/"), ("session", "/api/v1/session/")):
        response = client.get(path, secure=True)
        results[name] = {
            "status": response.status_code,
            "body": response.content.decode(),
            "headers": dict(response.headers),
            "cookies": [morsel.OutputString() for morsel in response.cookies.values()],
        }

    def broken(**kwargs: object) -> None:
        raise RuntimeError("an unexpected failure deep inside a selector")

    selectors.session_summary = broken
    response = client.get("/api/v1/session/", secure=True)
    results["unhandled"] = {"status": response.status_code, "body": response.content.decode()}
    # This process commits to the test database, whose other tests expect no stray sessions.
    Session.objects.filter(session_key=client.cookies["sessionid"].value).delete()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
