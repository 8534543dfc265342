"""Operations tests run on a clean Redis (queues, RQ's registries, the recovery sweep), submit
operations as the processing tests do, and run the storage flow on the Cloudinary stand-in and a real S3 server too."""

import pytest

from tests.processors.conftest import output_path, run_operation, submit
from tests.storage.conftest import cloudinary_standin, moto_server, s3_bucket, standin_tls

__all__ = ["cloudinary_standin", "moto_server", "output_path", "run_operation", "s3_bucket", "standin_tls", "submit"]


@pytest.fixture(autouse=True)
def _clean_redis(redis_connection) -> None:
    """Most of these tests queue, run or sweep jobs."""
