"""The worker scripts are tested with the same operations the processing tests submit, on a clean
Redis: the workers they start serve its queues."""

import pytest

from tests.processors.conftest import submit  # noqa: F401  (a fixture, registered by importing it)


@pytest.fixture(autouse=True)
def _clean_redis(redis_connection) -> None:
    """Every test here starts workers on the test run's Redis."""
