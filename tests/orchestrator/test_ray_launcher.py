"""The cluster-launcher path, as docker/README.md tells users: ``ray up docker/local-cluster.yaml`` over a
real SSH server on 127.0.0.1, the study file copied with ``ray rsync-up``, then ``ray submit … 
docker/semtune_entry.py run <study>``, with Ray's token authentication on.

The shipped config is used with only what names this machine filled in (head IP, user, key) and free
ports; its ``ray stop`` lines are left out, as they would end every Ray of this machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient

from servers import SshServer, free_port
from study_cli import trial_runs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _launcher_config(tmp_path: Path, sshd: SshServer, token_file: Path, gcs_port: int, dashboard_port: int,
                     temp_dir: str) -> Path:
    cfg = yaml.safe_load((ROOT / "docker" / "local-cluster.yaml").read_text())
    cfg["cluster_name"] = f"semtune-test-{uuid.uuid4().hex[:8]}"  # the local provider keeps state per name
    cfg["provider"]["head_ip"] = "127.0.0.1"
    cfg["auth"] = {"ssh_user": sshd.user, "ssh_private_key": str(sshd.key)}
    cfg["file_mounts"] = {"~/.ray/auth_token": str(token_file)}
    cfg["head_start_ray_commands"] = [
        c.replace("--port=6379", f"--port={gcs_port} --dashboard-port={dashboard_port} --num-cpus=2 "
                                 f"--node-ip-address=127.0.0.1 --temp-dir={temp_dir}")
        for c in cfg["head_start_ray_commands"] if c.strip() != "ray stop"]
    assert all(f"--port={gcs_port}" in c for c in cfg["head_start_ray_commands"])
    path = tmp_path / "local-cluster.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_ray_up_then_ray_submit_runs_a_study_on_the_launched_cluster(tmp_path, study_doc, mlflow_server):
    ray.shutdown()  # this process holds no Ray that `ray down` (`ray stop` on the head) could end
    (tmp_path / "sshd").mkdir()
    sshd = SshServer(tmp_path / "sshd").start()
    token = secrets.token_hex(16)
    token_file = tmp_path / "auth_token"
    token_file.write_text(token)
    gcs_port, dashboard_port = free_port(), free_port()
    temp_dir = f"/tmp/ray{uuid.uuid4().hex[:6]}"  # the head's own, not the machine's /tmp/ray (short: sockets)
    config = _launcher_config(tmp_path, sshd, token_file, gcs_port, dashboard_port, temp_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    (tmp_path / "launcher-tmp").mkdir()  # the launcher's config cache lands here, not in the machine's /tmp
    env.update(PATH=f"{sshd.bin_dir}:{Path(sys.executable).parent}:{env.get('PATH', '')}",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, TMPDIR=str(tmp_path / "launcher-tmp"))

    def ray_cli(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(["ray", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        assert done.returncode == 0, (args, (done.stdout + done.stderr)[-4000:])
        return done

    try:
        ray_cli("up", "-y", str(config))
        study = tmp_path / "study.yaml"
        study.write_text(yaml.safe_dump(study_doc(
            tmp_path / "studies", "launched", tracking_uri=mlflow_server, pruner={"name": "none"},
            conditions={"snr_db": [20], "kn": ["1/12"]},
            budget={"trials_per_condition": 2, "max_concurrent": 2, "stage1_epochs": 1, "stage2_epochs": 1})))
        ray_cli("rsync-up", str(config), str(study), "~/study.yaml")  # ~: the head's home, as the launcher expands it
        assert (sshd.home / "study.yaml").read_text() == study.read_text()

        done = ray_cli("submit", str(config), "docker/semtune_entry.py", "run", "~/study.yaml")
        assert "study finished: 2 trials — 2 completed" in done.stdout, done.stdout[-3000:]

        record = json.loads((tmp_path / "studies" / "launched" / "study.json").read_text())
        runs = trial_runs(MlflowClient(mlflow_server), record["experiment_id"])
        assert len(runs) == 2 and all(r.data.tags["semtune.status"] == "completed" for r in runs)
        # The driver joined the launcher's Ray (RAY_ADDRESS=auto), not a Ray of its own.
        nodes = json.loads(ray_cli("list", "nodes", "--address", f"127.0.0.1:{gcs_port}", "--format", "json").stdout)
        assert {r.data.tags["semtune.node_id"] for r in runs} == {n["node_id"] for n in nodes}
    finally:
        subprocess.run(["ray", "down", "-y", str(config)], cwd=ROOT, env=env,
                       capture_output=True, timeout=300)
        sshd.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
