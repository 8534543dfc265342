"""axe-core, the accessibility engine, fetched with npm's own client at test time.

``npm pack axe-core@<version>`` into a cache outside the repository, the tarball checked against
its pinned sha256, ``axe.min.js`` extracted once and injected into the page by Playwright. Without
npm, or when the registry cannot be reached, the audit skips and says why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

AXE_VERSION = "4.10.3"
AXE_TARBALL_SHA256 = "0f2b4d7dcdf7d1219df8d1959ad68e565f51d14c3f0d88bb71cd59abeb956292"
CACHE = Path(os.environ.get("KONVRT_TEST_CACHE", Path.home() / ".cache" / "konvrt-test-media")) / "npm"
# Serious and critical are what the audit refuses; moderate and minor are reported by axe too.
BLOCKING_IMPACTS = {"serious", "critical"}


def axe_script() -> Path:
    """The path of axe.min.js, fetched and checked if needed; skips the test when it can't be."""
    script = CACHE / f"axe-core-{AXE_VERSION}" / "axe.min.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the accessibility audit fetches axe-core with it.")
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"axe-core-{AXE_VERSION}.tgz"
    if not tarball.exists():
        try:
            subprocess.run(  # noqa: S603 (a fixed argument list, no shell)
                [npm, "pack", "--silent", f"axe-core@{AXE_VERSION}"],
                cwd=CACHE,
                check=True,
                capture_output=True,
                timeout=120,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"npm could not fetch axe-core {AXE_VERSION} (is the registry reachable?): {e}")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != AXE_TARBALL_SHA256:
        tarball.unlink()
        pytest.fail(f"axe-core-{AXE_VERSION}.tgz has sha256 {digest}, not the pinned {AXE_TARBALL_SHA256}.")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_bytes(member.read())
    return script


def audit(page) -> list[dict[str, object]]:
    """Runs axe on the page as it is now; returns its serious and critical violations."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(axe_script()))
    results = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "targets": [node["target"] for node in violation["nodes"]],
        }
        for violation in results["violations"]
        if violation["impact"] in BLOCKING_IMPACTS
    ]
