"""The cluster topology's own pieces that run without root: the commands it starts are the
Procfile's, and without root or namespaces it skips with a reason instead of failing.

The topology itself (four network namespaces, a killed and a cut-off worker host, a restarted web
host) is `make cluster-test` (scripts/cluster.py), run by CI after `make test`: it takes minutes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import cluster  # noqa: E402


def test_hosts_run_the_procfiles_commands(tmp_path):
    topology = cluster.Cluster(work=tmp_path, python="/opt/venv/bin/python")

    assert topology.procfile("web").startswith("gunicorn --config config/gunicorn.py")
    assert topology.procfile("worker") == "bash scripts/start_workers.sh run"
    assert topology.procfile("release") == "/opt/venv/bin/python manage.py migrate --noinput"


def test_every_host_has_its_own_disk_and_shares_only_the_services(tmp_path):
    topology = cluster.Cluster(work=tmp_path, python=sys.executable)
    environments = {host: topology.environment(host) for host in ("web", "worker1", "worker2")}

    assert len({env["STORAGE_ROOT"] for env in environments.values()}) == 3
    assert len({env["WORKER_RUN_DIR"] for env in environments.values()}) == 3
    for env in environments.values():
        assert env["STORAGE_BACKEND"] == "s3"
        assert cluster.HOSTS["services"] in env["DATABASE_URL"] and cluster.HOSTS["services"] in env["REDIS_URL"]
        assert "127.0.0.1" not in env["DATABASE_URL"] + env["REDIS_URL"] + env["AWS_S3_ENDPOINT_URL"]


def test_without_root_it_skips_with_a_reason(monkeypatch, capsys):
    monkeypatch.setattr(cluster.os, "geteuid", lambda: 1000)

    assert cluster.main() == 0

    assert capsys.readouterr().out == "SKIPPED: needs root (network namespaces, veth pairs)\n"


def test_without_namespaces_it_skips_with_a_reason(monkeypatch, capsys):
    monkeypatch.setattr(cluster.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cluster.shutil, "which", lambda name: f"/usr/bin/{name}")
    refused = subprocess.CompletedProcess(
        ["ip"], 1, "", "mount --make-shared /run/netns failed: Operation not permitted"
    )
    monkeypatch.setattr(cluster, "run", lambda *command, check=True, **options: refused)

    assert cluster.main() == 0

    assert capsys.readouterr().out == "SKIPPED: cannot create network namespaces here (ip netns add failed)\n"
