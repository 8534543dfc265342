"""Operations tests run the storage flow on the Cloudinary stand-in too."""

from tests.storage.conftest import cloudinary_standin, standin_tls

__all__ = ["cloudinary_standin", "standin_tls"]
