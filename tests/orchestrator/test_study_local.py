"""End-to-end studies on a real local Ray with real MLflow stores and real Optuna storage.

(a) the embedded sqlite store; (b) a real ``mlflow server`` on 127.0.0.1 with trials logging
over http; (e) pruned trials are PRUNED in Optuna; (f) a NaN trial fails with its reason
while the study completes.
"""


from pathlib import Path

import optuna
import pytest
import ray
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from orchestrator.spec import load_spec
from orchestrator.study.runner import run_study
from orchestrator.study.folder import StudyFolder
from study_cli import trial_runs  # tests/ is on the pytest pythonpath

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running cluster
    yield
    ray.shutdown()


def _trial_runs(outcome, view=ViewType.ACTIVE_ONLY):
    return trial_runs(MlflowClient(outcome.tracking_uri), outcome.experiment_id, view)


def _optuna_trials(folder: StudyFolder):
    storage = optuna.storages.RDBStorage(folder.optuna_url)
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        out[summary.study_name] = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    return out


def _check_bookkeeping(outcome, spec):
    """One run per trial, none RUNNING, statuses consistent with Optuna's states."""
    runs = _trial_runs(outcome)
    n_expected = spec.budget.trials_per_condition * len(spec.conditions.kn) * len(spec.conditions.snr_db)
    ids = [r.data.tags["semtune.trial_id"] for r in runs]
    assert len(ids) == len(set(ids)) == n_expected
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)
    assert MlflowClient(outcome.tracking_uri).get_run(outcome.parent_run_id).info.status == "FINISHED"
    by_trial = {r.data.tags["semtune.trial_id"]: r for r in runs}
    studies = _optuna_trials(StudyFolder(outcome.folder))
    arms = sorted(f"{spec.name}/snr20_kn{k}/{m}" for k in ("1-12", "1-6") for m in spec.methods)
    assert sorted(n for n in studies if not n.endswith("/pruning")) == arms
    expected_state = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
    seen = 0
    for name, trials in studies.items():
        if name.endswith("/pruning"):
            continue
        for t in trials:
            if "duplicate_of" in t.user_attrs:  # a repeated suggestion, asked again (ParetoOptunaSearch)
                assert t.state.name == "FAIL"
                continue
            run = by_trial[t.user_attrs["tune_trial_id"]]
            assert t.state.name == expected_state[run.data.tags["semtune.status"]], (name, t.number)
            assert [run.data.tags["semtune.condition"], run.data.tags["semtune.method"]] == name.split("/")[1:3]
            seen += 1
    assert seen == n_expected
    return runs


def test_embedded_study_prunes_and_tracks(write_study):
    """(a) + (e): sqlite MLflow in the study folder; stopped trials are PRUNED, never COMPLETE."""
    spec = load_spec(write_study(budget={"trials_per_condition": 4, "max_concurrent": 1},
                                 pruner={"reduction_factor": 4}))
    outcome = run_study(spec)
    folder = StudyFolder(outcome.folder)
    assert outcome.tracking_uri == folder.embedded_tracking_uri and (folder.path / "mlflow.db").is_file()
    runs = _check_bookkeeping(outcome, spec)
    statuses = [r.data.tags["semtune.status"] for r in runs]
    assert "pruned" in statuses and "completed" in statuses
    for r in runs:
        epoch = int(r.data.metrics["epoch"])
        total = int(r.data.params["epochs_total"])
        if r.data.tags["semtune.status"] == "pruned":
            assert epoch < total and int(r.data.tags["semtune.pruned_at_epoch"]) == epoch
        else:
            assert epoch == total == 3
        history = MlflowClient(outcome.tracking_uri).get_metric_history(r.info.run_id, "accuracy")
        assert [m.step for m in history] == list(range(1, epoch + 1))  # one point per epoch, step = epoch
        assert r.data.params["kn_achieved"] in ("0.083333", "0.166667")
    assert outcome.epochs_run < outcome.epochs_no_pruning == 8 * 3
    parent = MlflowClient(outcome.tracking_uri).get_run(outcome.parent_run_id)
    assert parent.data.metrics["epochs_run"] == outcome.epochs_run
    assert parent.data.params["budget.trials_per_condition"] == "4"
    assert parent.data.tags["semtune.spec_hash"] == spec.spec_hash()


def test_failing_trial_is_recorded_and_the_study_completes(write_study):
    """(f): tau = 1e-40 makes the contrastive loss NaN; that trial fails with its reason."""
    spec = load_spec(write_study(
        name="failing", search_space={"alpha1": 0.0, "tau": {"choices": [1e-40, 0.5]}},
        sampler={"name": "grid"}, pruner={"name": "none"}, budget={"trials_per_condition": 2}))
    outcome = run_study(spec)
    runs = _check_bookkeeping(outcome, spec)
    failed = [r for r in runs if r.data.tags["semtune.status"] == "failed"]
    assert len(failed) == 2 and all(float(r.data.params["tau"]) == 1e-40 for r in failed)
    for r in failed:
        assert r.info.status == "FAILED"
        assert r.data.tags["semtune.failure_reason"].startswith("TrialDiverged: training loss is nan")
        # a divergence is deterministic: failed at once, never retried (budget.max_failures is 2 by default)
        trial_dir = Path(r.data.tags["semtune.trial_dir"])
        assert spec.budget.max_failures == 2 and trial_dir.is_dir() and not list(trial_dir.glob("error*"))
    assert outcome.counts == {"completed": 2, "failed": 2}


def test_study_logs_over_http_to_a_real_mlflow_server(write_study, mlflow_server):
    """(b): the trials, in Ray workers, log to ``http://127.0.0.1:<port>``."""
    spec = load_spec(write_study(name="http", tracking_uri=mlflow_server, budget={"trials_per_condition": 2}))
    outcome = run_study(spec)
    assert outcome.tracking_uri == mlflow_server
    assert not (StudyFolder(outcome.folder).path / "mlflow.db").exists()
    runs = _check_bookkeeping(outcome, spec)
    assert all(r.data.metrics.get("psnr") for r in runs)
    client = MlflowClient(mlflow_server)
    arts = [a.path for a in client.list_artifacts(outcome.parent_run_id)]
    assert "spec.yaml" in arts


def test_four_methods_under_two_channel_models_each_get_a_front_and_the_gain_table(write_study):
    """Issue 10: the paper's comparison in one study. Every (condition, method) is its own Optuna study and
    its own front; the report compares the proposed method with each baseline from those fronts."""
    import csv

    from orchestrator.cli import main as cli_main

    methods = ["proposed", "deepjscc", "deepjscc_ft", "deepsc"]
    spec = load_spec(write_study(
        name="methods", methods=methods,
        conditions={"channel": ["awgn", "rayleigh"], "snr_db": [20], "kn": ["1/6"]},
        search_space={"alpha1": {"choices": [0.5, 0.9]}, "alpha2": {"choices": [0.5, 0.9]}, "tau": 0.5},
        pruner={"name": "none"}, budget={"trials_per_condition": 1, "max_concurrent": 2}))
    outcome = run_study(spec)
    assert outcome.exit_code == 0, outcome.front_sizes
    runs = _trial_runs(outcome)
    arms = {(r.data.tags["semtune.condition"], r.data.tags["semtune.method"]) for r in runs}
    assert arms == {(c, m) for c in ("snr20_kn1-6", "rayleigh_snr20_kn1-6") for m in methods}
    assert len(runs) == 2 * 4  # one trial per arm (study_arms' budgets are checked in test_spec)
    assert {r.data.params["cfg.channel.model"] for r in runs if r.data.tags["semtune.condition"].startswith("ray")} \
        == {"rayleigh"}
    for r in runs:
        used = {"deepjscc": set(), "deepjscc_ft": {"alpha2"}, "deepsc": {"alpha1"},
                "proposed": {"alpha1", "alpha2", "tau", "proj_dim"}}[r.data.tags["semtune.method"]]
        assert used == {k for k in ("alpha1", "alpha2", "tau", "proj_dim") if k in r.data.params}
    assert all(outcome.front_sizes.get(f"{c}/{m}") for c, m in arms)
    studies = _optuna_trials(StudyFolder(outcome.folder))
    assert sorted(studies) == sorted(f"methods/{c}/{m}" for c, m in arms)

    assert cli_main(["report", str(outcome.folder), "--no-models"]) == 0
    report = outcome.folder / "report"
    with open(report / "gains.csv") as f:
        gains = list(csv.DictReader(f))
    assert {(g["condition"], g["baseline"]) for g in gains} == {
        (c, m) for c in ("snr20_kn1-6", "rayleigh_snr20_kn1-6") for m in methods[1:]}
    text = (report / "report.md").read_text()
    assert "## Proposed method vs baselines" in text and "### rayleigh_snr20_kn1-6" in text
    assert "the classifier and the codec never saw either" in text  # which images the numbers come from
