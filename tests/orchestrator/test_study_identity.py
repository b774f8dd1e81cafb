"""Study identity: the spec hash covers the science, not where it runs; a study folder can move.

(a) ``StudySpec.spec_hash`` ignores every path and address (``WHERE_FIELDS``) and follows the
science; ``study.json`` resolves the embedded MLflow store from the folder it is read from; the
router's pickles hold no Optuna storage path; the embedded store's artifact URIs follow a move.
(b) slow: a real study is interrupted, its folder moved to another parent, and ``semtune resume``
completes it there, writing nothing at the old place; ``semtune run`` with another
``budget.max_concurrent`` then resumes it instead of refusing it.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from orchestrator.spec import build_spec, load_spec, study_arms
from orchestrator.spec.study import PATH_OR_KIND_FIELDS, WHERE_FIELDS
from orchestrator.study.folder import StudyFolder
from orchestrator.tracking.study_run import relocate_artifacts
from orchestrator.tune.search import build_router
from study_docs import DELETE, tiny_doc, with_changes
from study_cli import SEMTUNE, semtune_env, trial_runs  # tests/ is on the pytest pythonpath



def ident_doc() -> dict:
    """The tiny study with every path field set (relative: they resolve against the spec's folder)."""
    return tiny_doc(name="ident", dataset={"search_dirs": ["data"], "root": "cache/cifar"},
                    trial={"classifier": {"checkpoint": "models/r20.th", "search_dirs": ["models"],
                                          "cache_dir": "cache/classifiers"}})


def changed(doc: dict, dotted: str, value) -> dict:
    return with_changes(doc, {dotted: value})


# -- (a) the hash --------------------------------------------------------------------------------

WHERE_CHANGES = [
    ("storage_path", "/elsewhere/studies"), ("tracking_uri", "http://10.0.0.9:5000"),
    ("ray_address", "10.0.0.9:6379"), ("resources", {"cpu": 4, "gpu": 0.5}),
    ("budget.max_concurrent", 7), ("budget.max_failures", 3), ("report", {"reference_psnr": 12.0}),
    ("dataset.root", "/mnt/cifar"), ("dataset.search_dirs", ["/mnt/a", "/mnt/b"]),
    ("trial.classifier.search_dirs", ["/mnt/models"]), ("trial.classifier.cache_dir", "/mnt/cache"),
    ("trial.classifier.checkpoint", "/mnt/models/another-copy.th"),  # a file is identified by its bytes
]
SCIENCE_CHANGES = [
    ("search_space.alpha1", {"low": 0.2, "high": 0.9}), ("conditions.snr_db", [5]), ("conditions.kn", ["1/12"]),
    ("seed", 1), ("trial.stage1.lr", 0.01), ("budget.trials_per_condition", 4), ("pruner.grace_epochs", 2),
    ("trial.classifier.checkpoint", "auto"), ("dataset.tune_per_class", 6), ("name", "ident2"),
]


@pytest.mark.parametrize(("field", "value"), WHERE_CHANGES, ids=[c[0] for c in WHERE_CHANGES])
def test_the_hash_ignores_where_a_study_runs(tmp_path, field, value):
    h = build_spec(ident_doc(), tmp_path).spec_hash()
    assert build_spec(changed(ident_doc(), field, value), tmp_path).spec_hash() == h


@pytest.mark.parametrize(("field", "value"), SCIENCE_CHANGES, ids=[f"{c[0]}={c[1]}" for c in SCIENCE_CHANGES])
def test_the_hash_follows_the_science(tmp_path, field, value):
    h = build_spec(ident_doc(), tmp_path).spec_hash()
    assert build_spec(changed(ident_doc(), field, value), tmp_path).spec_hash() != h


def test_a_moved_checkout_or_study_file_is_the_same_study(tmp_path):
    """Relative paths are pinned absolute against the study file's folder: another folder, same hash."""
    here, there = build_spec(ident_doc(), tmp_path / "a"), build_spec(ident_doc(), tmp_path / "b")
    assert here.storage_path != there.storage_path and here.dataset.search_dirs != there.dataset.search_dirs
    assert here.spec_hash() == there.spec_hash()
    assert here.legacy_spec_hash() != there.legacy_spec_hash()  # what study.json held before


def test_a_study_begun_under_the_first_rung_of_before_is_told_how_to_resume(tmp_path):
    """A study whose file leaves ``pruner.grace_epochs`` unset, begun when it defaulted to 1, is not a
    "different study": resuming it names the field and the value it began with; set, it resumes."""
    from orchestrator.study.folder import StudyRecord
    from orchestrator.study.runner import _resumed_record
    from trainables.config import ConfigError

    unset = with_changes(tiny_doc(), {"pruner.grace_epochs": DELETE, "mlflow": False})
    began = build_spec(changed(unset, "pruner.grace_epochs", 1), tmp_path)
    folder = StudyFolder(tmp_path / "tiny")
    folder.path.mkdir()
    folder.write_record(StudyRecord(name="tiny", spec_hash=began.spec_hash(), tracking_uri="", experiment_id="",
                                    parent_run_id="", semtune_version="0", git_commit=None, created="now"))
    with pytest.raises(ConfigError) as err:
        _resumed_record(build_spec(unset, tmp_path), folder)
    [(path, reason)] = err.value.problems
    assert path == "pruner.grace_epochs" and "set grace_epochs: 1" in reason, err.value.problems
    assert _resumed_record(began, folder).spec_hash == began.spec_hash()
    with pytest.raises(ConfigError, match="a different study named 'tiny'"):  # any other change stays refused
        _resumed_record(build_spec(changed(unset, "seed", 7), tmp_path), folder)


def test_checkpoint_kinds_stay_apart(tmp_path):
    hashes = {build_spec(changed(ident_doc(), "trial.classifier.checkpoint", c), tmp_path).spec_hash()
              for c in ("auto", "models/r20.th")}
    no_checkpoint = changed(changed(ident_doc(), "trial.classifier.checkpoint", None), "trial.classifier.finetune_epochs", 1)
    hashes.add(build_spec(no_checkpoint, tmp_path).spec_hash())
    assert len(hashes) == 3


def test_every_where_field_names_a_field_of_the_spec(tmp_path):
    """A typo in WHERE_FIELDS would silently keep that field in the hash."""
    dump = build_spec(ident_doc(), tmp_path).model_dump(mode="json")
    for keys in WHERE_FIELDS + PATH_OR_KIND_FIELDS:
        node = dump
        for key in keys:
            assert isinstance(node, dict) and key in node, keys
            node = node[key]


# -- (a) study.json, the router's pickles, the artifact URIs -------------------------------------


def _record(folder: Path, tracking_uri: str, **extra) -> None:
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({
        "name": "ident", "spec_hash": "0" * 16, "tracking_uri": tracking_uri, "experiment_id": "1",
        "parent_run_id": "r", "semtune_version": "0.1.0", "git_commit": None, "created": "2026-01-01", **extra}))


def test_the_embedded_store_is_the_folders_own_wherever_it_is(tmp_path):
    old = tmp_path / "was" / "ident"
    _record(tmp_path / "now" / "ident", f"sqlite:///{old}/mlflow.db")  # a study.json from before the flag
    record = StudyFolder(tmp_path / "now" / "ident").read_record()
    assert record.embedded_tracking and record.tracking_uri == f"sqlite:///{tmp_path}/now/ident/mlflow.db"

    _record(tmp_path / "new" / "ident", f"sqlite:///{old}/mlflow.db", embedded_tracking=True)
    assert StudyFolder(tmp_path / "new" / "ident").read_record().tracking_uri.endswith("/new/ident/mlflow.db")

    for uri in ("http://10.0.0.9:5000", f"sqlite:///{tmp_path}/shared/mlflow.db"):  # a store of the user's
        folder = tmp_path / str(abs(hash(uri))) / "ident"
        _record(folder, uri)
        record = StudyFolder(folder).read_record()
        assert not record.embedded_tracking and record.tracking_uri == uri


def test_the_routers_pickles_hold_no_storage_and_bind_to_the_restoring_one(tmp_path):
    spec = build_spec(ident_doc(), tmp_path)
    arms = study_arms(spec)
    old, new = tmp_path / "old" / "ident", tmp_path / "new" / "ident"
    old.mkdir(parents=True)
    router = build_router(spec, arms, f"sqlite:///{old}/optuna.db")
    params = router.suggest("t1")
    router.save(str(tmp_path / "searcher-state.pkl"))  # what Tune snapshots
    snapshot = (tmp_path / "searcher-state.pkl").read_bytes()
    pickled = pickle.dumps(router)  # what tuner.pkl holds
    for blob in (snapshot, pickled):
        assert str(old).encode() not in blob

    with pytest.raises(RuntimeError, match="without its Optuna storage"):
        pickle.loads(pickled).suggest("t2")  # unbound: never silently on a path of the past

    new.parent.mkdir()
    shutil.move(old, new)
    restored = build_router(spec, arms, f"sqlite:///{new}/optuna.db")
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    assert restored.suggest("t1") == params  # the same Optuna trial, found in the moved storage
    restored.on_trial_complete("t1", result={"epoch": 3, "epochs_total": 3, "accuracy": 0.4, "psnr": 15.0})
    study = optuna.load_study(study_name=f"ident/{params['arm']}", storage=f"sqlite:///{new}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert not old.exists()


def test_the_embedded_stores_artifact_uris_follow_a_moved_folder(tmp_path):
    old, new = tmp_path / "old" / "ident", tmp_path / "new" / "ident"
    old.mkdir(parents=True)
    client = MlflowClient(f"sqlite:///{old}/mlflow.db")
    eid = client.create_experiment("ident", artifact_location=(old / "mlartifacts").as_uri())
    run = client.create_run(eid)
    (tmp_path / "a.txt").write_text("before the move")
    client.log_artifact(run.info.run_id, str(tmp_path / "a.txt"))
    new.parent.mkdir()
    shutil.move(old, new)

    root = (new / "mlartifacts").as_uri()
    assert relocate_artifacts(new / "mlflow.db", eid, root) == (old / "mlartifacts").as_uri()
    assert relocate_artifacts(new / "mlflow.db", eid, root) is None  # idempotent
    client = MlflowClient(f"sqlite:///{new}/mlflow.db")
    assert client.get_experiment(eid).artifact_location == root
    # what every command does that opens the folder (resume, run, report): reading study.json
    again = tmp_path / "again" / "ident"
    again.parent.mkdir()
    shutil.move(new, again)
    (again / "study.json").write_text(json.dumps({
        "name": "ident", "spec_hash": "0" * 16, "tracking_uri": f"sqlite:///{new}/mlflow.db", "experiment_id": eid,
        "parent_run_id": run.info.run_id, "semtune_version": "0.1.0", "git_commit": None, "created": "2026-01-01",
        "embedded_tracking": True}))
    record = StudyFolder(again).read_record()
    assert record.tracking_uri == f"sqlite:///{again}/mlflow.db"
    new, root = again, (again / "mlartifacts").as_uri()
    client = MlflowClient(record.tracking_uri)
    assert client.get_experiment(eid).artifact_location == root
    assert client.get_run(run.info.run_id).info.artifact_uri.startswith(root + "/")
    assert Path(client.download_artifacts(run.info.run_id, "a.txt", str(tmp_path))).read_text() == "before the move"
    (tmp_path / "b.txt").write_text("after")
    client.log_artifact(run.info.run_id, str(tmp_path / "b.txt"))
    assert list(new.rglob("b.txt")) and not old.exists() and not (tmp_path / "new" / "ident").exists()


# -- (b) a real study, interrupted, moved, resumed -------------------------------------------------


def _interrupt_mid_study(path: Path, folder: StudyFolder, cwd: Path) -> None:
    """``semtune run`` until one trial has finished and another is training, then SIGTERM (a graceful stop)."""
    log = open(cwd / "run.log", "w")
    proc = subprocess.Popen([*SEMTUNE, "run", str(path)], cwd=cwd, env=semtune_env(), stdout=log, stderr=log,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, f"the study ended before it could be interrupted (rc {proc.returncode})"
            assert time.time() < deadline, "the study never had finished and running trials at once"
            if folder.exists() and (folder.path / "mlflow.db").exists():
                record = folder.read_record()
                runs = trial_runs(MlflowClient(record.tracking_uri), record.experiment_id)
                status = [r.data.tags.get("semtune.status") for r in runs]
                if {"completed", "pruned"} & set(status) and any(
                        s == "running" and r.data.metrics for s, r in zip(status, runs)):
                    break
            time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 130, (cwd / "run.log").read_text()[-3000:]
    finally:
        try:  # whatever of that Ray session is still alive goes too, before the folder moves
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    time.sleep(2)


def _rung_entries(state_file: Path) -> set[tuple[str, str, str]]:
    state = json.loads(state_file.read_text())
    return {(arm, level, tid) for arm, rungs in state["rungs"].items() for level, rec in rungs.items() for tid in rec}


@pytest.mark.slow
def test_a_moved_study_folder_resumes_where_it_is(write_study, tmp_path):
    path = write_study(name="moved", budget={"trials_per_condition": 4, "max_concurrent": 2,
                                             "stage1_epochs": 2, "stage2_epochs": 2},
                       pruner={"name": "moasha", "grace_epochs": 1, "reduction_factor": 2})
    spec = load_spec(path)
    old = StudyFolder.for_spec(spec)
    n_expected = spec.budget.trials_per_condition * len(spec.conditions.kn) * len(spec.conditions.snr_db)
    started = time.time()
    _interrupt_mid_study(path, old, tmp_path)
    interrupted_s = time.time() - started
    rungs_before = _rung_entries(old.scheduler_state)
    record = old.read_record()
    before = {r.data.tags["semtune.trial_id"] for r in trial_runs(MlflowClient(record.tracking_uri),
                                                                    record.experiment_id)}
    assert rungs_before and 0 < len(before) < n_expected

    new = StudyFolder(tmp_path / "elsewhere" / "moved")
    new.path.parent.mkdir()
    shutil.move(str(old.path), str(new.path))
    started = time.time()
    done = subprocess.run([*SEMTUNE, "resume", str(new.path)], cwd=tmp_path, env=semtune_env(),
                          capture_output=True, text=True, timeout=900)
    resumed_s = time.time() - started
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"resuming study 'moved' from {new.path}" in done.stderr
    assert f"the study folder moved from {old.path}" in done.stderr
    assert f"study finished: {n_expected} trials" in done.stdout, done.stdout
    assert f"study folder: {new.path}" in done.stdout
    # nothing at the old place: no folder, no database, no checkpoint, no state file
    assert not old.path.exists() and list(old.path.parent.iterdir()) == []

    record = new.read_record()
    assert record.embedded_tracking and record.tracking_uri == new.embedded_tracking_uri
    client = MlflowClient(record.tracking_uri)
    runs = trial_runs(client, record.experiment_id)
    ids = [r.data.tags["semtune.trial_id"] for r in runs]
    assert len(ids) == len(set(ids)) == n_expected and before <= set(ids)
    assert not [r for r in trial_runs(client, record.experiment_id, ViewType.ALL) if r.info.status == "RUNNING"]
    assert client.get_run(record.parent_run_id).info.status == "FINISHED"
    assert client.get_run(record.parent_run_id).data.tags["semtune.study_folder"] == str(new.path)
    root = new.artifact_location
    assert client.get_experiment(record.experiment_id).artifact_location == root
    assert all(r.info.artifact_uri.startswith(root + "/") for r in runs)
    for r in runs:  # every trial ran (a trial created after the move once failed on the old storage path)
        assert r.data.tags["semtune.status"] in ("completed", "pruned"), r.data.tags.get("semtune.failure_reason")
    for r in runs:  # every trial's Tune folder is in the new folder, also of trials created after the move
        assert (new.tune_dir / Path(r.data.tags["semtune.trial_dir"]).name).is_dir()
        assert r.data.tags["semtune.trial_dir"].startswith(str(new.path)) or r.data.tags["semtune.trial_id"] in before

    # the restored MO-ASHA read the rungs of the trials run before the move, and kept them
    assert rungs_before <= _rung_entries(new.scheduler_state)
    storage = optuna.storages.RDBStorage(new.optuna_url)
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        assert all(t.state.name != "RUNNING" for t in trials), summary.study_name

    # (c) the same study from a study file with other "where" fields resumes instead of refusing
    again = write_study(name="moved", storage_path=str(new.path.parent),
                        budget={"trials_per_condition": 4, "max_concurrent": 1, "stage1_epochs": 2,
                                "stage2_epochs": 2},
                        pruner={"name": "moasha", "grace_epochs": 1, "reduction_factor": 2})
    rerun = subprocess.run([*SEMTUNE, "run", str(again)], cwd=tmp_path, env=semtune_env(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming study 'moved'" in rerun.stderr and "already exists" not in rerun.stderr
    assert f"study finished: {n_expected} trials" in rerun.stdout
    assert yaml.safe_load(new.spec_file.read_text())["budget"]["max_concurrent"] == 1
    print(f"\ninterrupted after {interrupted_s:.0f} s; resumed after the move in {resumed_s:.0f} s")


def test_a_folder_named_by_a_relative_path_has_an_absolute_artifact_location(tmp_path, monkeypatch):
    """``semtune report semtune-studies/quickstart`` (README) names the folder relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    location = StudyFolder(Path("studies") / "q").artifact_location
    assert location == (tmp_path / "studies" / "q" / "mlartifacts").as_uri()
