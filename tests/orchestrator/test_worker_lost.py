"""(a) A worker node dies mid-trial: the trial continues on another node from its last checkpoint.

A cluster of real ``ray start`` processes on 127.0.0.1 (:class:`servers.RayNodes`, token authentication
on): a head that runs no trials (``--num-cpus 0``) and two one-CPU worker nodes; the study logs to a
real ``mlflow server``. Once a trial has logged its second epoch, the node it runs on is killed (every
process of it at once, no graceful stop, as a lost machine). Tune retries the trial
(``budget.max_failures`` is 2 by default) on the other node, from its checkpoint; the study ends with
exactly its trials, one run each, completed, each epoch logged once.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from orchestrator.spec import load_spec
from orchestrator.study.runner import run_study
from servers import RayNodes

pytestmark = pytest.mark.slow
EPOCHS = 4


@pytest.fixture
def head_and_two_workers(tmp_path, monkeypatch):
    # This test's process is the driver: it joins with the cluster's token. Ray reads the token once per
    # process; its own tests reset that cache when they change it (a private helper, tests only).
    from ray._private.authentication_test_utils import reset_auth_token_state

    nodes = RayNodes(tmp_path, workers=2, cpus_per_node=1, head_cpus=0).start()
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.setenv(key, nodes.env[key])
    reset_auth_token_state()
    yield nodes
    ray.shutdown()
    nodes.stop()
    monkeypatch.undo()
    reset_auth_token_state()  # the tests after this one start Rays of their own, without a token


def _kill_the_node_of_a_trial_mid_training(nodes: RayNodes, client: MlflowClient, killed: dict) -> None:
    """Watch MLflow; when a trial has logged epoch 2 (so its epoch-1 checkpoint is saved) but not its
    last, kill the worker node it runs on."""
    deadline = time.time() + 600
    while time.time() < deadline and not killed:
        if ray.is_initialized():
            temp_dirs = {n["NodeID"]: nodes.node_temp_dir(n) for n in ray.nodes() if n["Alive"]}
            for exp in client.search_experiments():
                for run in client.search_runs([exp.experiment_id], filter_string="tags.`semtune.kind` = 'trial'"):
                    epoch = run.data.metrics.get("epoch", 0)
                    node_id = run.data.tags.get("semtune.node_id")
                    if (temp_dirs.get(node_id) not in (None, nodes.temp_dirs[0])  # a worker, not the head
                            and 2 <= epoch < EPOCHS and run.data.tags.get("semtune.status") == "running"):
                        nodes.kill(temp_dirs[node_id])
                        killed.update(trial=run.data.tags["semtune.trial_id"], node=node_id, epoch=epoch)
                        return
        time.sleep(0.2)


def test_a_trial_on_a_lost_node_continues_on_another_from_its_checkpoint(write_study, head_and_two_workers,
                                                                          mlflow_server):
    nodes = head_and_two_workers
    spec = load_spec(write_study(
        name="lost", ray_address=nodes.address, tracking_uri=mlflow_server, pruner={"name": "none"},
        budget={"trials_per_condition": 1, "max_concurrent": 2, "stage1_epochs": 2, "stage2_epochs": 2}))
    assert spec.budget.max_failures >= 2  # the default: a lost node is retried
    client = MlflowClient(mlflow_server)
    killed: dict = {}
    killer = threading.Thread(target=_kill_the_node_of_a_trial_mid_training, args=(nodes, client, killed),
                              daemon=True)
    killer.start()
    outcome = run_study(spec)
    killer.join(timeout=5)
    assert killed, "no trial reached its second epoch on a worker node"
    assert outcome.exit_code == 0

    runs = client.search_runs([outcome.experiment_id], filter_string="tags.`semtune.kind` = 'trial'")
    assert len({r.data.tags["semtune.trial_id"] for r in runs}) == len(runs) == 2
    for r in runs:
        assert (r.info.status, r.data.tags["semtune.status"]) == ("FINISHED", "completed"), r.data.tags
        for metric in ("accuracy", "psnr", "epoch"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, metric)] == list(range(1, EPOCHS + 1))
    moved = next(r for r in runs if r.data.tags["semtune.trial_id"] == killed["trial"])
    assert moved.data.tags["semtune.node_id"] != killed["node"]  # the last attempt ran elsewhere

    # Tune recorded the lost node as the trial's one failure, and restored the retry from a checkpoint,
    # not from epoch 1 (its message, in the worker logs of the nodes).
    trial_dir = Path(moved.data.tags["semtune.trial_dir"])
    assert (trial_dir / "error.txt").read_text().startswith("Failure # 1 ")
    assert "Failure # 2" not in (trial_dir / "error.txt").read_text()
    restored = re.compile(rf"Restored on \S+ from checkpoint: .*{trial_dir.name}/checkpoint_\d+")
    logs = [f for d in nodes.temp_dirs for f in Path(d).glob("session_*/logs/worker-*")]
    assert any(restored.search(f.read_text(errors="replace")) for f in logs)
