"""Optuna-pruner scheduler on a real sqlite storage, the factory, and MO-ASHA inside a real Tune run."""

from __future__ import annotations

import pickle

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.spec import PrunerSpec
from orchestrator.tune.schedulers import (
    PRUNER_NAMES, OptunaPrunerScheduler, ParetoSuccessiveHalving, Unpruned, build_scheduler,
)
from orchestrator.tune.snapshots import SnapshotPolicy

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
WEIGHTS = {"accuracy": 1.0, "psnr": 0.01}


def trial(tid: str, condition: str = "snr20") -> Trial:
    return Trial("f", config={"condition": condition}, stub=True, trial_id=tid)


def result(epoch: int, accuracy: float, psnr: float, total: int = 3) -> dict:
    return {"epoch": epoch, "epochs_total": total, "accuracy": accuracy, "psnr": psnr}


def run(s, t: Trial, curve, total: int = 3) -> list[str]:
    """Feed epochs 1.. of ``curve`` (accuracy, psnr) pairs; notify completion as Tune would."""
    decisions = []
    for epoch, (acc, psnr) in enumerate(curve, start=1):
        decisions.append(s.on_trial_result(None, t, result(epoch, acc, psnr, total)))
        if decisions[-1] == STOP:
            break
    s.on_trial_complete(None, t, result(epoch, acc, psnr, total))
    return decisions


@pytest.fixture
def storage_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def median(storage_url) -> OptunaPrunerScheduler:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    return OptunaPrunerScheduler(pruner, storage_url, weights=WEIGHTS, study_prefix="exp")


# -- OptunaPrunerScheduler ---------------------------------------------------------------------


def test_median_pruner_stops_a_clearly_worse_trial(storage_url):
    s = median(storage_url)
    assert run(s, trial("good"), [(0.8, 30.0)] * 3) == [CONTINUE] * 3
    assert run(s, trial("bad"), [(0.2, 10.0)] * 3) == [STOP]
    assert run(s, trial("fine"), [(0.85, 31.0)] * 3) == [CONTINUE] * 3
    assert run(s, trial("other"), [(0.1, 5.0)] * 3, total=3) == [STOP]
    assert run(s, trial("alone", "snr0"), [(0.1, 5.0)] * 3) == [CONTINUE] * 3  # another condition
    assert s.stopped_trials == {"bad": 1, "other": 1}

    studies = set(optuna.get_all_study_names(storage_url))
    assert studies == {"exp/snr20/pruning", "exp/snr0/pruning"}
    shadow = optuna.load_study(study_name="exp/snr20/pruning", storage=storage_url)
    states = {t.user_attrs["tune_trial_id"]: t.state for t in shadow.trials}
    assert states == {"good": TrialState.COMPLETE, "bad": TrialState.PRUNED,
                      "fine": TrialState.COMPLETE, "other": TrialState.PRUNED}  # fmt: skip
    good = next(t for t in shadow.trials if t.user_attrs["tune_trial_id"] == "good")
    assert good.value == pytest.approx(0.8 + 0.3) and good.intermediate_values == {1: 1.1, 2: 1.1, 3: 1.1}


def test_mapping_is_rebuilt_from_the_storage(storage_url):
    s = median(storage_url)
    run(s, trial("good"), [(0.8, 30.0)] * 3)
    run(s, trial("bad"), [(0.2, 10.0)] * 3)
    s.on_trial_result(None, trial("open"), result(1, 0.9, 33.0))  # still running at the "crash"

    for rebuilt in (median(storage_url), pickle.loads(pickle.dumps(s))):  # fresh / as Tuner.restore does
        assert rebuilt.shadow_trials == {"good": ("snr20", 0), "bad": ("snr20", 1), "open": ("snr20", 2)}
        assert rebuilt.stopped_trials == {"bad": 1}
        # the resumed trial keeps its shadow trial (re-reported epoch overwrites), a pruned one stays stopped
        assert rebuilt.on_trial_result(None, trial("open"), result(1, 0.91, 33.0)) == CONTINUE
        assert rebuilt.on_trial_result(None, trial("bad"), result(2, 0.2, 10.0)) == STOP
        assert len(optuna.load_study(study_name="exp/snr20/pruning", storage=storage_url).trials) == 3


def test_trial_errors_fail_the_shadow_trial_unless_tune_retries_it(storage_url):
    s = median(storage_url)
    retried, failed = trial("retried"), trial("failed")
    s.on_trial_result(None, retried, result(1, 0.5, 20.0))
    s.on_trial_result(None, failed, result(1, 0.5, 20.0))
    retried.set_status(Trial.ERROR)  # Tune's recovery path: ERROR, on_trial_error, then requeue
    s.on_trial_error(None, retried)
    s.on_trial_error(None, failed)  # terminal path: still RUNNING when the scheduler is told
    shadow = optuna.load_study(study_name="exp/snr20/pruning", storage=storage_url)
    assert [t.state for t in shadow.trials] == [TrialState.RUNNING, TrialState.FAIL]
    # a trial restarted after a FAIL gets a fresh shadow trial
    assert s.on_trial_result(None, failed, result(1, 0.5, 20.0)) == CONTINUE
    assert s.shadow_trials["failed"] == ("snr20", 2)


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_nan_results_do_not_crash(storage_url):
    s = median(storage_url)
    run(s, trial("good"), [(0.8, 30.0)] * 3)
    assert s.on_trial_result(None, trial("nan"), result(1, float("nan"), 20.0)) == STOP
    assert s.on_trial_result(None, trial("missing"), {"epoch": 1, "epochs_total": 3}) == STOP


def test_successive_halving_pruner_via_the_factory(storage_url):
    s = build_scheduler(PrunerSpec(name="successive_halving", scalarization=WEIGHTS), max_epochs=9,
                        storage=storage_url)
    assert run(s, trial("a"), [(0.8, 30.0)] * 9, total=9) == [CONTINUE] * 9
    assert run(s, trial("b"), [(0.1, 5.0)] * 9, total=9) == [STOP]
    assert s.stopped_trials == {"b": 1}


@pytest.mark.parametrize(
    ("weights", "message"),
    [(None, r"`weights` is None"), ({}, r"`weights` is \{\}"), ({"accuracy": float("nan")}, r"finite"),
     ({"accuracy": 0.0}, r"non-zero")],  # fmt: skip
)
def test_weights_are_validated(weights, message):
    with pytest.raises(ValueError, match=message):
        OptunaPrunerScheduler(optuna.pruners.MedianPruner(), weights=weights)


def test_pruner_must_be_an_optuna_pruner():
    with pytest.raises(ValueError, match=r"`pruner` is 'median'"):
        OptunaPrunerScheduler("median", weights=WEIGHTS)


# -- build_scheduler ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grace", "stage1", "expected"),
    [(None, 4, (5,)), (None, 6, (1, 3)), (None, None, (1, 3)), (2, 4, (2,)), (1, 4, (1, 3))],  # fmt: skip
)
def test_the_first_rung_defaults_to_the_first_epoch_of_stage_2(grace, stage1, expected, tmp_path):
    s = build_scheduler(PrunerSpec(grace_epochs=grace), max_epochs=6, stage1_epochs=stage1,
                        state_path=tmp_path / "s.json")
    assert s.rung_levels == expected


@pytest.mark.parametrize("grace", [None, 5])
def test_no_trial_is_stopped_in_stage_1_by_default(grace, tmp_path):
    """Rung 5 of 4 + 2 epochs: a trial far behind is kept through stage 1 and stopped one epoch into stage 2."""
    s = build_scheduler(PrunerSpec(grace_epochs=grace), max_epochs=6, stage1_epochs=4,
                        state_path=tmp_path / "s.json")
    for tid in "abc":
        run(s, trial(tid), [(0.9, 30.0)] * 6, total=6)
    assert run(s, trial("d"), [(0.1, 5.0)] * 6, total=6) == [CONTINUE] * 4 + [STOP]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name", PRUNER_NAMES)
def test_factory_builds_every_name(name, tmp_path):
    s = build_scheduler(PrunerSpec(name=name, scalarization=WEIGHTS), max_epochs=9, state_path=tmp_path / "s.json")
    assert isinstance(s, FIFOScheduler) and isinstance(s, SnapshotPolicy)
    expected = {"moasha": ParetoSuccessiveHalving, "none": Unpruned}.get(name, OptunaPrunerScheduler)
    assert type(s) is expected
    if isinstance(s, OptunaPrunerScheduler):
        pruner_type = {"successive_halving": "SuccessiveHalving", "hyperband": "Hyperband",
                       "median": "Median", "wilcoxon": "Wilcoxon"}[name]  # fmt: skip
        assert type(s._pruner).__name__ == f"{pruner_type}Pruner"


def test_the_pruner_rules_are_the_spec_s():
    """The rules on a pruner section are checked once, by the spec; the factory takes its result."""
    from trainables.config import ConfigError

    from orchestrator.spec.sections import PrunerSpec as Spec

    for bad in ({"name": "asha"}, {"name": "median"}, {"name": "hyperband", "reduction_factor": 2.5,
                                                        "scalarization": WEIGHTS},
                {"name": "median", "scalarization": {"accuracy": 0.0}}):
        with pytest.raises((ValueError, ConfigError)):
            Spec(**bad)


# -- MO-ASHA in a real Tune run ----------------------------------------------------------------

EPOCHS = 4
# (condition, accuracy, psnr) at full budget; within a condition, listed in the order they run.
ARMS = [
    ("snr20", 0.90, 28.0), ("snr20", 0.70, 32.0), ("snr20", 0.60, 26.0),  # third: dominated by both
    ("snr0", 0.40, 18.0), ("snr0", 0.20, 12.0), ("snr0", 0.30, 15.0),  # all worse than any snr20 arm
]  # fmt: skip


def make_trainable(arms, epochs):
    """A closure, so Ray pickles it by value (this test module is not importable on workers)."""

    def trainable(config):
        from ray import tune

        _, acc, psnr = arms[config["case"]]
        for epoch in range(1, epochs + 1):
            grow = 0.5 + 0.5 * epoch / epochs  # same curve shape for every arm: dominance is per arm
            tune.report({"epoch": epoch, "epochs_total": epochs, "accuracy": acc * grow, "psnr": psnr * grow})

    return trainable


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running cluster
    yield ray
    ray.shutdown()


def _dominates(a, b) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


@pytest.mark.slow
def test_moasha_in_a_real_tune_run(local_ray, tmp_path):
    from ray import tune

    state = tmp_path / "scheduler.json"
    scheduler = ParetoSuccessiveHalving(max_epochs=EPOCHS, grace_epochs=1, reduction_factor=3, state_path=state)
    tuner = tune.Tuner(
        make_trainable(ARMS, EPOCHS),
        param_space={
            "case": tune.grid_search(list(range(len(ARMS)))),
            "condition": tune.sample_from(lambda config: ARMS[config["case"]][0]),
        },
        # one trial at a time: arrival order at the rungs = ARMS; a reused actor starts in ms, not s
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="moasha", verbose=0),
    )
    grid = tuner.fit()
    assert not grid.errors

    stopped = ParetoSuccessiveHalving(max_epochs=EPOCHS, state_path=state).stopped_trials  # as a study reads it
    last = {r.metrics["trial_id"]: (r.config, r.metrics["epoch"]) for r in grid}
    assert len(last) == len(ARMS) and 1 <= len(stopped) < len(ARMS)
    assert {last[tid][0]["case"] for tid in stopped} == {2, 4, 5}  # the order of arrival is fixed
    for tid, (config, epoch) in last.items():
        assert epoch == stopped.get(tid, EPOCHS)  # stopped ones end at their rung, the others ran out
        if tid in stopped:
            rung = scheduler.records(config["condition"])[epoch]
            assert any(_dominates(v, rung[tid]) for other, v in rung.items() if other != tid)
    # each condition's non-dominated arms ran to the end (snr0's best would lose to any snr20 arm)
    for condition in ("snr20", "snr0"):
        arms = [i for i, arm in enumerate(ARMS) if arm[0] == condition]
        points = np.array([ARMS[i][1:] for i in arms])
        best = {i for i, p in zip(arms, points) if not any(_dominates(q, p) for q in points)}
        assert best and all(last[tid][1] == EPOCHS for tid, (c, _) in last.items() if c["case"] in best)


@pytest.mark.slow
def test_optuna_pruner_scheduler_in_a_real_tune_run(local_ray, tmp_path):
    """The scheduler pickles with the Tuner, and Tune's hooks tell the shadow trials their end."""
    from ray import tune

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    scheduler = build_scheduler(PrunerSpec(name="median", scalarization=WEIGHTS, n_startup_trials=1),
                                max_epochs=EPOCHS, storage=url)
    grid = tune.Tuner(
        make_trainable(ARMS, EPOCHS),
        param_space={"case": tune.grid_search([0, 2]), "arm": "snr20"},  # good, then dominated; one arm
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="median", verbose=0),
    ).fit()
    epochs = {r.config["case"]: r.metrics["epoch"] for r in grid}
    assert not grid.errors and epochs == {0: EPOCHS, 2: 1}
    shadow = optuna.load_study(study_name="study/snr20/pruning", storage=url)
    assert [t.state for t in shadow.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
