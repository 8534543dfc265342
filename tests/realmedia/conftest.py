"""Fixtures of the real-media set: the pinned files (``sources.py``) and the processing helpers of
``tests/processors`` (an operation run by a real RQ worker)."""

from __future__ import annotations

import pytest

from tests.processors.conftest import output_path, run_operation, submit  # noqa: F401  (fixtures)
from tests.realmedia.sources import RealMedia, cache_root


@pytest.fixture(scope="session")
def real_media() -> RealMedia:
    return RealMedia(cache_root())
