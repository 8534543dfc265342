"""Fixtures of the real-media set: the pinned files (``sources.py``) and the processing helpers of
``tests/processors`` (an operation run by a real RQ worker)."""

from __future__ import annotations

import pytest

from tests.processors.conftest import output_path, run_operation, submit  # noqa: F401  (fixtures)
from tests.realmedia.sources import RealMedia, cache_root

_REAL_MEDIA = RealMedia(cache_root())


def pytest_collection_finish(session: pytest.Session) -> None:
    """A run with real-media tests in it starts fetching what the cache lacks at once, in the
    background: the downloads (a minute on a fresh machine) overlap the tests that come first."""
    if session.config.option.collectonly:
        return
    if any("real_media" in getattr(item, "fixturenames", ()) for item in session.items):
        _REAL_MEDIA.prefetch_in_background()


@pytest.fixture(scope="session")
def real_media() -> RealMedia:
    return _REAL_MEDIA
