"""(a) A worker node dies mid-trial: the trial continues on another node from its last checkpoint.

A ``ray.cluster_utils.Cluster`` of a head that runs no trials (``num_cpus=0``) and two one-CPU
worker nodes; the study logs to a real ``mlflow server``. Once a trial has logged its second epoch,
the node it runs on is killed (every process of it, without a graceful stop). Tune retries the trial
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
from ray.cluster_utils import Cluster

from orchestrator.spec import load_spec
from orchestrator.study.runner import run_study

pytestmark = pytest.mark.slow
EPOCHS = 4


@pytest.fixture
def head_and_two_workers():
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def _kill_the_node_of_a_trial_mid_training(cluster, workers, client: MlflowClient, killed: dict) -> None:
    """Watch MLflow; when a trial has logged epoch 2 (so its epoch-1 checkpoint is saved) but not its
    last, kill the worker node it runs on."""
    deadline = time.time() + 600
    while time.time() < deadline and not killed:
        for exp in client.search_experiments():
            for run in client.search_runs([exp.experiment_id], filter_string="tags.`semtune.kind` = 'trial'"):
                epoch = run.data.metrics.get("epoch", 0)
                node = next((w for w in workers if w.node_id == run.data.tags.get("semtune.node_id")), None)
                if node is not None and 2 <= epoch < EPOCHS and run.data.tags.get("semtune.status") == "running":
                    cluster.remove_node(node, allow_graceful=False)
                    killed.update(trial=run.data.tags["semtune.trial_id"], node=node.node_id, epoch=epoch)
                    return
        time.sleep(0.2)


def test_a_trial_on_a_lost_node_continues_on_another_from_its_checkpoint(write_study, head_and_two_workers,
                                                                          mlflow_server):
    cluster, workers = head_and_two_workers
    spec = load_spec(write_study(
        name="lost", ray_address=cluster.address, tracking_uri=mlflow_server, pruner={"name": "none"},
        budget={"trials_per_condition": 1, "max_concurrent": 2, "stage1_epochs": 2, "stage2_epochs": 2}))
    assert spec.budget.max_failures >= 2  # the default: a lost node is retried
    client = MlflowClient(mlflow_server)
    killed: dict = {}
    killer = threading.Thread(target=_kill_the_node_of_a_trial_mid_training,
                              args=(cluster, workers, client, killed), daemon=True)
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
    logs = {Path(n.get_logs_dir_path()) for n in (cluster.head_node, *workers)}
    assert any(restored.search(f.read_text(errors="replace")) for d in logs for f in d.glob("worker-*"))
