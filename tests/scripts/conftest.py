"""The worker scripts are tested with the same operations the processing tests submit."""

from tests.processors.conftest import submit  # noqa: F401  (a fixture, registered by importing it)
