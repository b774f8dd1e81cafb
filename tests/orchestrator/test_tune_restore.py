"""A Tune snapshot that lags the study (a driver killed between two snapshots): a trial checkpointed
since, or ended since with its verdict already in Optuna."""

from __future__ import annotations

import json

import ray.cloudpickle
from mlflow.tracking import MlflowClient
from ray.train import Checkpoint, CheckpointConfig
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune.trainable.metadata import _TrainingRunMetadata

from orchestrator.outcomes import Outcome, trial_outcome
from orchestrator.spec import build_spec, study_arms
from orchestrator.tracking.runs import StudyRun, child_runs, finish_run, trial_tags
from orchestrator.tracking.tags import TAG_PARENT, TAG_STATUS, TAG_TRIAL, TAG_TRIAL_DIR
from orchestrator.tune.restore import (adopt_orphaned_trials, repair_lagging_checkpoints, settle_ended_trials,
                                       unfinished_in_last_snapshot)
from orchestrator.tune.search import build_router
from orchestrator.tune.storage import TuneStorage
from study_docs import tiny_doc


def _runtime(trial_dir, checkpoint: str, last_result_names: str | None = None) -> str:
    """Tune's run metadata of a trial whose checkpoint manager holds ``checkpoint`` (what a restore
    loads) and whose last result names ``last_result_names`` (by default the same)."""
    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = _CheckpointManager(CheckpointConfig(num_to_keep=1))
    last = {"epoch": 2, "checkpoint_dir_name": last_result_names or checkpoint}
    metadata.checkpoint_manager.register_checkpoint(_TrainingResult(Checkpoint(str(trial_dir / checkpoint)), last))
    metadata.last_result = last
    return metadata.get_json_state()


def _state(tune_dir, dirname: str, checkpoint: str, last_result_names: str | None = None) -> None:
    trial = json.dumps({"relative_logdir": dirname, "status": "RUNNING"})
    runtime = _runtime(tune_dir / dirname, checkpoint, last_result_names)
    (tune_dir / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": [[trial, runtime]]}))


def test_the_named_but_deleted_checkpoint_is_restored_from_the_newer_one(tmp_path):
    trial = tmp_path / "snr20_kn1-12_proposed_abc"
    (trial / "checkpoint_000003").mkdir(parents=True)
    (trial / "checkpoint_000003" / "state.pt").write_bytes(b"epoch 3")
    _state(tmp_path, trial.name, "checkpoint_000002")
    assert repair_lagging_checkpoints(TuneStorage.local(tmp_path)) == 1
    assert (trial / "checkpoint_000002" / "state.pt").read_bytes() == b"epoch 3"
    assert repair_lagging_checkpoints(TuneStorage.local(tmp_path)) == 0  # idempotent


def test_the_checkpoint_a_restore_loads_is_repaired_not_the_last_results(tmp_path):
    """Snapshotted after the result naming checkpoint 2 but before Tune registered it, then killed once
    checkpoint 1 was deleted: the restore loads checkpoint 1 (seen in CI, 2026-12-07)."""
    trial = tmp_path / "t"
    for n in (2, 3):
        (trial / f"checkpoint_00000{n}").mkdir(parents=True)
        (trial / f"checkpoint_00000{n}" / "state.pt").write_bytes(f"epoch {n}".encode())
    _state(tmp_path, "t", "checkpoint_000001", last_result_names="checkpoint_000002")
    assert repair_lagging_checkpoints(TuneStorage.local(tmp_path)) == 1
    assert (trial / "checkpoint_000001" / "state.pt").read_bytes() == b"epoch 3"


def test_a_present_or_unrecoverable_checkpoint_is_left_alone(tmp_path):
    trial = tmp_path / "t"
    (trial / "checkpoint_000001").mkdir(parents=True)
    _state(tmp_path, "t", "checkpoint_000001")
    assert repair_lagging_checkpoints(TuneStorage.local(tmp_path)) == 0
    _state(tmp_path, "t", "checkpoint_000004")  # nothing newer than the named one: Tune reports it
    assert repair_lagging_checkpoints(TuneStorage.local(tmp_path)) == 0
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000001"]


# -- a trial that ended after Tune's last snapshot ------------------------------------------------


def _told_study(tmp_path):
    """A router with two suggested trials, one told COMPLETE, and MLflow runs for both, still RUNNING
    (the driver was killed after Optuna heard the verdict, before RunFinalizer and Tune's snapshot)."""
    spec = build_spec(tiny_doc(), tmp_path)
    router = build_router(spec, study_arms(spec), f"sqlite:///{tmp_path}/optuna.db")
    router.suggest("ended")
    router.suggest("running")
    router.on_trial_complete("ended", result={"epoch": 3, "epochs_total": 3, "accuracy": 0.61, "psnr": 21.5})
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    eid = client.create_experiment("tiny")
    parent = client.create_run(eid).info.run_id
    study = StudyRun(f"sqlite:///{tmp_path}/mlflow.db", eid, parent, "tiny")
    for trial_id in ("ended", "running"):
        client.create_run(eid, tags={TAG_PARENT: parent, TAG_STATUS: "running", **trial_tags(trial_id, "c", "m")})
    tune_dir = tmp_path / "tune"
    tune_dir.mkdir()
    lagging = {"epoch": 2, "epochs_total": 3, "accuracy": 0.5, "psnr": 20.0}
    trial_data = [[json.dumps({"trial_id": t, "status": "RUNNING", "relative_logdir": t}),
                   json.dumps({"last_result": lagging})] for t in ("ended", "running")]
    (tune_dir / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    limiter = {"max_concurrent": 2, "live_trials": {"ended", "running"}, "num_unfinished_live_trials": 2}
    (tune_dir / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(
        ray.cloudpickle.dumps({"counter": 2, "name:ConcurrencyLimiter": limiter}))
    return tune_dir, router, study


def test_a_trial_told_after_the_last_snapshot_is_restored_as_ended_with_its_verdict(tmp_path):
    tune_dir, router, study = _told_study(tmp_path)
    fresh = build_router(build_spec(tiny_doc(), tmp_path), study_arms(build_spec(tiny_doc(), tmp_path)),
                         f"sqlite:///{tmp_path}/optuna.db")  # what a resume builds: it reads the storage
    assert settle_ended_trials(TuneStorage.local(tune_dir), fresh, study) == 1

    state = json.loads(next(tune_dir.glob("experiment_state-*.json")).read_text())
    trials = {json.loads(t)["trial_id"]: (json.loads(t), json.loads(r)) for t, r in state["trial_data"]}
    assert trials["ended"][0]["status"] == "TERMINATED"
    assert trials["ended"][1]["last_result"] == {"epoch": 3, "epochs_total": 3, "accuracy": 0.61, "psnr": 21.5}
    assert trials["running"][0]["status"] == "RUNNING"  # never told: it continues from its checkpoint
    assert trial_outcome(trials["ended"][1]["last_result"], errored=False).status == "completed"

    client = study.client()
    runs = {r.data.tags[TAG_TRIAL]: r for r in child_runs(client, study)}
    assert (runs["ended"].info.status, runs["ended"].data.tags[TAG_STATUS]) == ("FINISHED", "completed")
    assert (runs["running"].info.status, runs["running"].data.tags[TAG_STATUS]) == ("RUNNING", "running")
    limiter = ray.cloudpickle.loads(next(tune_dir.glob("search_gen_state-*.json")).read_bytes())["name:ConcurrencyLimiter"]
    assert (limiter["live_trials"], limiter["num_unfinished_live_trials"]) == ({"running"}, 1)  # its slot is free
    assert settle_ended_trials(TuneStorage.local(tune_dir), fresh, study) == 0  # idempotent: a killed resume resumes again


def test_a_run_that_runfinalizer_ended_keeps_its_own_verdict(tmp_path):
    tune_dir, router, study = _told_study(tmp_path)
    client = study.client()
    run = next(r for r in child_runs(client, study) if r.data.tags[TAG_TRIAL] == "ended")
    finish_run(client, run.info.run_id, Outcome("completed"), trial_dir="/where/tune/put/it")
    assert settle_ended_trials(TuneStorage.local(tune_dir), router, study) == 1
    assert client.get_run(run.info.run_id).data.tags[TAG_TRIAL_DIR] == "/where/tune/put/it"


def test_unfinished_trials_are_counted_from_the_newest_snapshot(tmp_path):
    """After a graceful stop the grid may count the stopped trials ended; the snapshot does not."""
    def snapshot(stamp: str, statuses: list[str]) -> None:
        trial_data = [[json.dumps({"trial_id": f"t{i}", "status": s}), "{}"] for i, s in enumerate(statuses)]
        (tmp_path / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": trial_data}))

    storage = TuneStorage.local(tmp_path)
    assert unfinished_in_last_snapshot(storage) == 0  # no snapshot yet
    snapshot("2026-01-01_00-00-00", ["RUNNING", "RUNNING"])
    snapshot("2026-01-02_00-00-00", ["TERMINATED", "ERROR", "RUNNING", "PENDING", "PAUSED"])
    assert unfinished_in_last_snapshot(storage) == 3
    snapshot("2026-01-03_00-00-00", ["TERMINATED", "ERROR"])
    assert unfinished_in_last_snapshot(storage) == 0


def test_a_lagging_snapshot_on_object_storage_is_repaired_and_settled_there(tmp_path, s3_server, monkeypatch):
    """The same rewrites through pyarrow's S3 filesystem, on a real S3-compatible server."""
    import pyarrow.fs

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    tune_dir, router, study = _told_study(tmp_path)
    (tune_dir / "ended" / "checkpoint_000003").mkdir(parents=True)
    (tune_dir / "ended" / "checkpoint_000003" / "state.pt").write_bytes(b"epoch 3")
    state = tune_dir / "experiment_state-2026-01-01_00-00-00.json"
    doc = json.loads(state.read_text())
    doc["trial_data"][0][1] = _runtime(tune_dir / "ended", "checkpoint_000002")
    state.write_text(json.dumps(doc))
    storage = TuneStorage.remote(s3_server.uri("restore/tune"))
    pyarrow.fs.copy_files(str(tune_dir), storage.path, destination_filesystem=storage.fs)

    assert not storage.is_local and storage.describe().startswith("s3://semtune-test/restore/tune")
    assert unfinished_in_last_snapshot(storage) == 2
    assert repair_lagging_checkpoints(storage) == 1
    assert "restore/tune/ended/checkpoint_000002/state.pt" in s3_server.keys("restore")
    assert storage.read(storage.join("ended/checkpoint_000002/state.pt")) == b"epoch 3"
    assert settle_ended_trials(storage, router, study) == 1
    assert unfinished_in_last_snapshot(storage) == 1  # "running" goes on; "ended" is settled, on the server
    saved = ray.cloudpickle.loads(storage.read(storage.glob("search_gen_state-*.json")[-1]))
    assert saved["name:ConcurrencyLimiter"]["live_trials"] == {"running"}
    run = next(r for r in child_runs(study.client(), study) if r.data.tags[TAG_TRIAL] == "ended")
    assert run.data.tags[TAG_TRIAL_DIR] == "s3://semtune-test/restore/tune/ended"
    assert settle_ended_trials(storage, router, study) == 0 and repair_lagging_checkpoints(storage) == 0


# -- a trial added after Tune's last snapshot --------------------------------------------------------


def test_trials_asked_after_the_snapshot_are_adopted_not_asked_again(tmp_path):
    """The restored searcher takes back what Optuna recorded when each trial was asked: the one still
    running is told its verdict on the same Optuna trial, the one ended counts as issued; neither is
    closed FAIL nor replaced by a new ask."""
    spec = build_spec(tiny_doc(), tmp_path)
    url = f"sqlite:///{tmp_path}/optuna.db"
    router = build_router(spec, study_arms(spec), url)
    router.suggest("t1")
    router.save(str(tmp_path / "searcher-state.pkl"))  # Tune's last snapshot: t1 only
    running, ended = router.suggest("t2"), router.suggest("t3")
    router.on_trial_complete("t3", result={"epoch": 3, "epochs_total": 3, "accuracy": 0.5, "psnr": 20.0})

    fresh = build_router(spec, study_arms(spec), url)  # the resumed driver's
    fresh.restore(str(tmp_path / "searcher-state.pkl"))
    assert fresh.owner == router.owner and fresh.issued == router.issued
    assert fresh.suggest("t2") == running  # the same configuration, the same Optuna trial
    fresh.on_trial_complete("t2", result={"epoch": 1, "epochs_total": 3, "accuracy": 0.2, "psnr": 11.0})
    studies = {name: s._ot_study for name, s in fresh.searchers.items()}
    trials = {t.user_attrs["tune_trial_id"]: t for s in studies.values() for t in s.trials}
    assert {tid: t.state.name for tid, t in trials.items()} == {"t1": "RUNNING", "t2": "PRUNED", "t3": "COMPLETE"}
    assert trials["t3"].user_attrs["tune_config"] == ended
    assert sum(len(s.trials) for s in studies.values()) == 3  # nothing closed, nothing asked again


def test_trials_asked_before_any_snapshot_of_a_trial_are_closed_to_be_asked_again(tmp_path):
    """The driver died in the step that added the first trials, before the snapshot it forces: Tune's
    record has no trial to copy, and nothing of those trials has run."""
    spec = build_spec(tiny_doc(), tmp_path)
    url = f"sqlite:///{tmp_path}/optuna.db"
    router = build_router(spec, study_arms(spec), url)
    router.save(str(tmp_path / "searcher-state.pkl"))  # Tune's snapshot at its start
    router.suggest("t1")
    tune_dir = tmp_path / "tune"
    tune_dir.mkdir()
    (tune_dir / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    fresh = build_router(spec, study_arms(spec), url)
    assert adopt_orphaned_trials(TuneStorage.local(tune_dir), fresh, 3, lambda trial: trial.trial_id) == 0
    fresh.restore(str(tmp_path / "searcher-state.pkl"))
    assert fresh.owner == {} and sum(fresh.issued.values()) == 0  # asked again, not adopted
    trials = [t for s in fresh.searchers.values() for t in s._ot_study.trials]
    assert [(t.state.name, "orphaned" in t.user_attrs) for t in trials] == [("FAIL", True)]
