"""Fixtures for storage tests: a local Cloudinary stand-in that the real SDK talks to over HTTPS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.cloudinary_standin import CloudinaryStandIn


@pytest.fixture(scope="session")
def standin_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (written to a file, as REQUESTS_CA_BUNDLE would name it) and a server
    certificate for 127.0.0.1 signed by it."""
    authority = trustme.CA()
    ca_file = tmp_path_factory.mktemp("tls") / "standin-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return ca_file, context


@pytest.fixture
def cloudinary_standin(settings, standin_tls) -> Iterator[CloudinaryStandIn]:
    """Cloudinary storage switched on and pointed at a fresh stand-in, through CLOUDINARY_URL only."""
    ca_file, context = standin_tls
    standin = CloudinaryStandIn(ssl_context=context).start()
    settings.USE_CLOUDINARY = True
    settings.CLOUDINARY_URL = standin.cloudinary_url
    settings.CLOUDINARY_CREDENTIALS = {}
    settings.CLOUDINARY_CA_BUNDLE = str(ca_file)
    # Short, so that a stand-in that never answers costs the test only seconds.
    settings.CLOUDINARY_TIMEOUT = 3
    yield standin
    standin.stop()
