"""Replayed studies: trials served from a learning-curve table through the real orchestrator.

The replay trainable must return exactly the table's values; every sampler the spec offers must
run a replayed study end to end (Ray Tune, Optuna, MO-ASHA); NSGA-II's generations must advance
although MO-ASHA prunes most trials.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import ray
import yaml

from bench.synthetic_curves import GRID, write_curve_table
from orchestrator.spec import load_spec
from orchestrator.spec.sections import SAMPLER_NAMES
from orchestrator.study.folder import StudyFolder
from orchestrator.study.runner import run_study
from orchestrator.tune.search import RUNG_VALUES_ATTR
from orchestrator.tune.trainable import TrialContext, trial_config
from trainables.config import ConfigError
from trainables.replay import NotInTable, replay_trial
from trainables.reporter import MemoryReporter

SPACE = {name: {"choices": values} for name, values in GRID.items()}


def replay_doc(table: Path, storage: Path, name: str, **over) -> dict:
    doc = {
        "name": name, "methods": ["proposed"], "replay": str(table), "mlflow": False,
        "trial": {"classifier": {"checkpoint": None, "allow_untrained": True}, "codec": {"width": 8}},
        "conditions": {"snr_db": [20], "kn": ["1/12"]},
        "search_space": SPACE,
        "sampler": {"name": "random"},
        "pruner": {"name": "moasha", "grace_epochs": 1, "reduction_factor": 3},
        "budget": {"trials_per_condition": 8, "max_concurrent": 2, "stage1_epochs": 4, "stage2_epochs": 2},
        "storage_path": str(storage),
    }
    doc.update(over)
    return doc


def spec_of(tmp_path: Path, doc: dict):
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_spec(path)


def final_rows(table: Path) -> dict[tuple, tuple[float, float]]:
    """(condition, alpha1, alpha2, tau, proj_dim) -> (accuracy, psnr) at the last epoch."""
    rows = pq.read_table(table).to_pylist()
    return {(r["condition"], r["alpha1"], r["alpha2"], r["tau"], r["proj_dim"]): (r["accuracy"], r["psnr"])
            for r in rows if r["epoch"] == r["epochs_total"] and r["method"] == "proposed"}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_curve_table(tmp_path_factory.mktemp("curves") / "curves.parquet")


def _cfg(spec, params: dict):
    from orchestrator.spec import base_trial_doc, condition_grid

    context = TrialContext(base_docs={m: base_trial_doc(spec, m) for m in spec.methods}, study=None)
    return trial_config(context, {"method": "proposed", **condition_grid(spec)[0].as_config(), **params})


class _KilledAfter(MemoryReporter):
    """Keeps the checkpoint of epoch ``epoch``, then dies as a killed worker would."""

    def __init__(self, epoch: int, **kw):
        super().__init__(**kw)
        self.epoch = epoch

    def report(self, metrics, checkpoint_dir):
        super().report(metrics, checkpoint_dir)
        if metrics["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_replay_serves_the_table_exactly_and_resumes_after_its_checkpoint(table, tmp_path):
    spec = spec_of(tmp_path, replay_doc(table, tmp_path / "s", "exact"))
    params = {"alpha1": 0.97, "alpha2": 0.9, "tau": 0.2, "proj_dim": 64}
    cfg = _cfg(spec, params)
    used = ("alpha1", "alpha2", "tau", "proj_dim")
    rows = [r for r in pq.read_table(table).to_pylist()
            if r["method"] == "proposed" and r["condition"] == "snr20_kn1-12"
            and all(r[k] == v for k, v in params.items())]
    assert len(rows) == 6

    whole = MemoryReporter(keep_checkpoint=tmp_path / "ckpt")
    replay_trial(cfg, table, used, whole)
    assert [(h["epoch"], h["accuracy"], h["psnr"], h["epochs_total"]) for h in whole.history] == \
        [(r["epoch"], r["accuracy"], r["psnr"], r["epochs_total"]) for r in sorted(rows, key=lambda r: r["epoch"])]

    # killed after epoch 2, resumed from that checkpoint: epochs 3..6, the same values
    with pytest.raises(KeyboardInterrupt):
        replay_trial(cfg, table, used, _KilledAfter(2, keep_checkpoint=tmp_path / "ckpt2"))
    resumed = MemoryReporter(resume_from=tmp_path / "ckpt2")
    replay_trial(cfg, table, used, resumed)
    assert [h["epoch"] for h in resumed.history] == [3, 4, 5, 6]
    assert resumed.history == whole.history[2:]


def test_a_configuration_the_table_lacks_fails_with_the_reason(table, tmp_path):
    spec = spec_of(tmp_path, replay_doc(table, tmp_path / "s", "missing"))
    cfg = _cfg(spec, {"alpha1": 0.5, "alpha2": 0.9, "tau": 0.2, "proj_dim": 64})
    with pytest.raises(NotInTable, match="alpha1=0.5"):
        replay_trial(cfg, table, ("alpha1", "alpha2", "tau", "proj_dim"), MemoryReporter())


def test_mlflow_false_refuses_a_tracking_uri(table, tmp_path):
    with pytest.raises(ConfigError) as err:
        spec_of(tmp_path, replay_doc(table, tmp_path / "s", "both", tracking_uri="http://127.0.0.1:5000"))
    assert [p for p, _ in err.value.problems] == ["mlflow"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running cluster
    yield
    ray.shutdown()


def _optuna_trials(folder: StudyFolder) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(folder.optuna_url)
    return [t for s in optuna.get_all_study_summaries(storage)
            for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_runs_a_replayed_study(sampler, table, tmp_path, local_ray):
    mlflow = sampler == "nsga2"  # one of them with MLflow on, the embedded store
    doc = replay_doc(table, tmp_path / "studies", f"replay-{sampler}", sampler={"name": sampler}, mlflow=mlflow)
    outcome = run_study(spec_of(tmp_path, doc))
    assert sum(outcome.counts.values()) == 8 and not outcome.interrupted
    assert outcome.counts.get("completed", 0) >= 1 and outcome.counts.get("failed", 0) == 0
    assert bool(outcome.tracking_uri) == mlflow
    truth = final_rows(table)
    done = [t for t in _optuna_trials(StudyFolder(outcome.folder)) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == outcome.counts["completed"]
    for t in done:  # the search saw exactly the recorded final scores
        key = ("snr20_kn1-12", t.params["alpha1"], t.params["alpha2"], t.params["tau"], t.params["proj_dim"])
        assert tuple(t.values) == pytest.approx(truth[key], abs=0)
    assert outcome.epochs_run < outcome.epochs_no_pruning or outcome.counts.get("pruned", 0) == 0


@pytest.mark.slow
def test_nsga2_generations_advance_while_moasha_prunes(table, tmp_path, local_ray):
    doc = replay_doc(table, tmp_path / "studies", "generations", sampler={"name": "nsga2", "population_size": 4},
                     budget={"trials_per_condition": 16, "max_concurrent": 2, "stage1_epochs": 4, "stage2_epochs": 2})
    outcome = run_study(spec_of(tmp_path, doc))
    trials = [t for t in _optuna_trials(StudyFolder(outcome.folder)) if t.state.is_finished()
              and t.state != optuna.trial.TrialState.FAIL]
    assert outcome.counts.get("pruned", 0) >= 8  # MO-ASHA with eta 3 stops most trials...
    key = next(k for k in trials[0].system_attrs if k.endswith("generation"))
    generations = [t.system_attrs[key] for t in trials]
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # ...so plain NSGA-II, which counts COMPLETE trials only, could not pass generation complete // 4
    assert max(generations) >= 2 and max(generations) > complete // 4
    assert all(RUNG_VALUES_ATTR in t.user_attrs for t in trials if t.state == optuna.trial.TrialState.PRUNED)
