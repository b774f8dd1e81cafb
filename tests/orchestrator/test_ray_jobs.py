"""A study submitted as users submit it: ``ray job submit --working-dir . -- semtune run study.yaml`` to a
real two-node cluster of ``ray start`` processes on 127.0.0.1 (token authentication on), logging to a
real ``mlflow server`` over http; stopped mid-study with ``ray job stop`` (drill e), then submitted again.

Each node has one CPU and each trial asks for one, so two trials at a time need both nodes. Two nodes on
one machine each have their own temp dir (:class:`servers.RayNodes` says why).
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.spec import load_spec
from orchestrator.study.folder import StudyFolder
from servers import MlflowServer, RayNodes
from study_cli import assert_gracefully_interrupted, assert_resumed_whole, wait_mid_study

pytestmark = pytest.mark.slow
STOP_GRACE_S = 120  # the head's RAY_JOB_STOP_WAIT_TIME_S, as docker/cluster.yaml sets it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    nodes = RayNodes(tmp_path_factory.mktemp("ray-nodes"), workers=1, cpus_per_node=1,
                     head_env={"RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S)}).start()
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-jobs")).start()
    yield server.url
    server.stop()


def _job_folder(tmp_path, study_doc, name: str, tracking: str, **over):
    """A folder holding only ``study.yaml``, the working dir a user submits; the study folder is
    outside it (on a real cluster: shared storage)."""
    job = tmp_path / f"job-{name}"
    job.mkdir()
    doc = study_doc(tmp_path / "studies", name, tracking_uri=tracking, resources={"cpu": 1}, **over)
    (job / "study.yaml").write_text(yaml.safe_dump(doc))
    return job, load_spec(job / "study.yaml")


def _submit(cluster: RayNodes, job, *entrypoint: str, wait: bool = True):
    args = ["job", "submit", "--working-dir", str(job)] + ([] if wait else ["--no-wait"])
    return cluster.ray(*args, "--", *entrypoint)


def _job_status(cluster: RayNodes, job_id: str) -> str:
    out = cluster.ray("job", "list", timeout_s=60).stdout
    listed = {j.split("'")[0]: j for j in out.split("submission_id='")[1:]}
    assert job_id in listed, out[-2000:]
    return listed[job_id].split("status=<JobStatus.")[1].split(":")[0]


def test_a_stopped_study_job_submitted_again_completes_on_both_nodes(cluster, tracking, tmp_path, study_doc):
    """(e) ``ray job stop`` mid-study is a graceful stop; the same ``semtune run study.yaml`` submitted
    again resumes it (``run`` continues a study whose folder exists) and the job succeeds."""
    job, spec = _job_folder(tmp_path, study_doc, "stopped", tracking,
                            budget={"trials_per_condition": 4, "max_concurrent": 2,
                                    "stage1_epochs": 3, "stage2_epochs": 1},
                            pruner={"name": "none"})
    # No trial is cut short, and 4 rounds of 2 trials leave 3 after the first ends: the stop lands mid-study,
    # not after it (with 2 rounds it came after the study had ended on a fast day: each `ray job` call to
    # see whether the job still runs takes seconds).
    folder = StudyFolder.for_spec(spec)
    n_expected = spec.budget.trials_per_condition * len(spec.conditions.kn) * len(spec.conditions.snr_db)
    submitted = _submit(cluster, job, "semtune", "run", "study.yaml", wait=False)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job_id = submitted.stdout.split("Job '")[1].split("'")[0]

    before = wait_mid_study(folder, lambda: _job_status(cluster, job_id) == "RUNNING")
    started = time.time()
    stop = cluster.ray("job", "stop", job_id, timeout_s=STOP_GRACE_S + 60)
    assert stop.returncode == 0, stop.stderr[-3000:]
    assert _job_status(cluster, job_id) == "STOPPED"
    logs = cluster.ray("job", "logs", job_id, timeout_s=60).stdout
    # Graceful: semtune got SIGTERM, Tune saved its state, and the driver left before Ray's SIGKILL.
    assert "study interrupted" in logs, logs[-3000:]
    assert time.time() - started < STOP_GRACE_S
    record = folder.read_record()
    assert record.tracking_uri == tracking
    assert_gracefully_interrupted(MlflowClient(record.tracking_uri), record)
    assert len(before) < n_expected

    done = _submit(cluster, job, "semtune", "run", "study.yaml")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "resuming study 'stopped'" in done.stdout + done.stderr
    assert f"study finished: {n_expected} trials" in done.stdout, done.stdout[-3000:]
    runs = assert_resumed_whole(folder, n_expected, before)

    nodes = json.loads(cluster.ray("list", "nodes", "--address", cluster.address, "--format", "json",
                                   timeout_s=60).stdout)
    alive = {n["node_id"] for n in nodes if n["state"] == "ALIVE"}
    assert len(alive) == 2
    assert {r.data.tags["semtune.node_id"] for r in runs} == alive  # two one-CPU trials at a time: both nodes
