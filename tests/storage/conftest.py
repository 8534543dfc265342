"""Fixtures for storage tests: a local Cloudinary stand-in that the real SDK talks to over HTTPS, and a
real S3 server (moto in server mode) behind a proxy that can fail on purpose."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import trustme

from tests.cloudinary_standin import CloudinaryStandIn
from tests.s3_server import FaultyProxy, MotoServer


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
    settings.CLOUDINARY_TIMEOUT = 1
    yield standin
    standin.stop()


@dataclass
class S3Bucket:
    """A fresh private bucket on the moto server, reached through the faulty proxy."""

    name: str
    proxy: FaultyProxy
    client: Any  # a boto3 S3 client straight to moto (no faults), to look at what was stored

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        return sorted(entry["Key"] for entry in listed.get("Contents", ()))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(log_dir=tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(settings, moto_server) -> Iterator[S3Bucket]:
    """S3 storage switched on (STORAGE_BACKEND=s3) with a new bucket behind a faulty proxy."""
    proxy = FaultyProxy(moto_server.url, hang_seconds=3).start()
    name = f"konvrt-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=moto_server.url,
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    settings.USE_CLOUDINARY = False
    settings.STORAGE_BACKEND = "s3"
    settings.AWS_STORAGE_BUCKET_NAME = name
    settings.AWS_S3_ENDPOINT_URL = proxy.url
    settings.AWS_ACCESS_KEY_ID = "test-key"
    settings.AWS_SECRET_ACCESS_KEY = "test-secret"
    settings.AWS_S3_REGION_NAME = "us-east-1"
    # Short, so that a server that never answers costs the test only seconds.
    settings.S3_TIMEOUT = 1
    yield S3Bucket(name=name, proxy=proxy, client=client)
    proxy.stop()
