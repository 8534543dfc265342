"""Operations tests run operations the processing tests' way, and the storage flow on the
Cloudinary stand-in too."""

from tests.processors.conftest import output_path, run_operation, submit
from tests.storage.conftest import cloudinary_standin, standin_tls

__all__ = ["cloudinary_standin", "output_path", "run_operation", "standin_tls", "submit"]
