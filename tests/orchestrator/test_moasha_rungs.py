"""ParetoSuccessiveHalving decisions, driven with real Tune ``Trial`` objects and hand-made results."""

from __future__ import annotations

import json
import math
import pickle

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.tune.schedulers import ParetoSuccessiveHalving
from orchestrator.tune.schedulers.moasha import crowding_distance, keeps, rung_levels, rung_order

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def trial(tid: str, condition: str = "snr20_kn1-12") -> Trial:
    return Trial("f", config={"condition": condition}, stub=True, trial_id=tid)


def result(epoch: int, accuracy: float, psnr: float, total: int = 9) -> dict:
    return {"epoch": epoch, "epochs_total": total, "accuracy": accuracy, "psnr": psnr, "training_iteration": epoch}


def scheduler(**kw) -> ParetoSuccessiveHalving:
    return ParetoSuccessiveHalving(**{"max_epochs": 9, "grace_epochs": 1, "reduction_factor": 3, **kw})


# -- rungs and the quota rule (pure) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("grace", "eta", "max_epochs", "expected"),
    [(1, 3, 9, (1, 3)), (1, 3, 10, (1, 3, 9)), (2, 2, 16, (2, 4, 8)), (3, 3, 3, ()), (2, 1.5, 8, (2, 3, 5, 7))],
)
def test_rung_levels(grace, eta, max_epochs, expected):
    assert rung_levels(grace, eta, max_epochs) == expected
    assert scheduler(grace_epochs=grace, reduction_factor=eta, max_epochs=max_epochs).rung_levels == expected


def test_quota_is_ceil_n_over_eta_and_first_always_continues():
    chain = [(0.9, 30.0), (0.8, 29.0), (0.7, 28.0), (0.6, 27.0)]  # each dominates the next
    assert keeps(chain[:1], 0, 3)  # alone: n=1, quota 1
    assert not keeps(chain[:2], 1, 3)  # n=2: quota 1
    assert keeps(chain, 1, 3) and not keeps(chain, 2, 3)  # n=4: quota ceil(4/3) = 2
    assert keeps(chain, 2, 1.5)  # n=4, eta 1.5: quota 3


def test_front_ties_are_broken_by_crowding_distance():
    front = [(0.9, 20.0), (0.8, 25.0), (0.75, 26.0), (0.5, 30.0)]  # all non-dominated
    assert math.isinf(crowding_distance(front)[0]) and math.isinf(crowding_distance(front)[3])
    # n=4, eta=2: quota 2, the two extreme points (infinite distance, tied) keep their place.
    assert [keeps(front, i, 2) for i in range(4)] == [True, False, False, True]
    # duplicates share one distance whatever their order
    assert crowding_distance([(1.0, 2.0), (1.0, 2.0)]).tolist() == [math.inf, math.inf]


def test_invalid_vectors_rank_behind_every_valid_one():
    rank, _ = rung_order([None, (0.1, 1.0), (0.9, 30.0)])
    assert rank.tolist() == [math.inf, 2, 1]
    assert not keeps([(0.1, 1.0), None], 1, 3) and keeps([None], 0, 3)


# -- the scheduler with Tune trials ------------------------------------------------------------


def test_dominated_trial_is_stopped_at_first_rung_non_dominated_continues():
    s = scheduler()
    assert s.on_trial_result(None, trial("a"), result(1, 0.80, 30.0)) == CONTINUE  # first at the rung
    assert s.on_trial_result(None, trial("b"), result(1, 0.50, 20.0)) == STOP  # dominated by a
    assert s.on_trial_result(None, trial("c"), result(1, 0.90, 25.0)) == CONTINUE  # trade-off with a
    assert s.on_trial_result(None, trial("a"), result(2, 0.10, 1.0)) == CONTINUE  # epoch 2 is no rung
    assert s.stopped_trials == {"b": 1}


def test_conditions_do_not_compete():
    s = scheduler()
    assert s.on_trial_result(None, trial("a", "snr20"), result(1, 0.9, 30.0)) == CONTINUE
    assert s.on_trial_result(None, trial("b", "snr0"), result(1, 0.2, 12.0)) == CONTINUE  # alone in snr0
    assert s.on_trial_result(None, trial("c", "snr0"), result(1, 0.1, 11.0)) == STOP
    assert set(s.records("snr20")[1]) == {"a"} and set(s.records("snr0")[1]) == {"b", "c"}


def test_grace_and_reduction_factor_place_the_rungs():
    s = scheduler(grace_epochs=2, reduction_factor=2, max_epochs=8)  # rungs 2, 4
    s.on_trial_result(None, trial("a"), result(1, 0.9, 30.0))
    assert s.on_trial_result(None, trial("b"), result(1, 0.1, 10.0)) == CONTINUE  # before grace
    for epoch in (2, 4):
        assert s.on_trial_result(None, trial("a"), result(epoch, 0.9, 30.0)) == CONTINUE
    assert s.on_trial_result(None, trial("b"), result(2, 0.1, 10.0)) == STOP
    assert sorted(s.records("snr20_kn1-12")) == [2, 4]


def test_re_reported_epoch_overwrites_its_record():
    s = scheduler()
    s.on_trial_result(None, trial("a"), result(1, 0.5, 20.0))
    s.on_trial_result(None, trial("a"), result(1, 0.6, 21.0))  # e.g. resumed from a checkpoint
    assert s.records("snr20_kn1-12") == {1: {"a": (0.6, 21.0)}}


def test_trial_at_its_own_budget_is_never_stopped():
    s = scheduler()
    s.on_trial_result(None, trial("a"), result(3, 0.9, 30.0))
    assert s.on_trial_result(None, trial("b"), result(3, 0.1, 10.0, total=3)) == CONTINUE
    assert s.stopped_trials == {} and "b" in s.records("snr20_kn1-12")[3]


def test_nan_objectives_do_not_crash_and_rank_last():
    s = scheduler()
    assert s.on_trial_result(None, trial("n"), result(1, math.nan, 25.0)) == CONTINUE  # first at the rung
    assert s.on_trial_result(None, trial("a"), result(1, 0.1, 5.0)) == CONTINUE  # beats the NaN one
    assert s.on_trial_result(None, trial("m"), {"epoch": 1, "epochs_total": 9, "psnr": 3.0}) == STOP  # missing key
    assert s.records("snr20_kn1-12")[1]["n"] is None


def test_stop_decision_stands_for_a_resumed_trial():
    s = scheduler()
    s.on_trial_result(None, trial("a"), result(1, 0.9, 30.0))
    assert s.on_trial_result(None, trial("b"), result(1, 0.1, 10.0)) == STOP
    assert s.on_trial_result(None, trial("b"), result(2, 0.95, 31.0)) == STOP


def test_a_trial_kept_at_a_rung_is_not_judged_there_again():
    """A trial resumed from a checkpoint older than a rung it passed reports that rung again; among the
    better trials that arrived since it would now be cut, and ASHA never takes a promotion back."""
    s = scheduler()
    assert s.on_trial_result(None, trial("a"), result(1, 0.5, 20.0)) == CONTINUE  # first at the rung
    for name, values in (("b", (0.9, 30.0)), ("c", (0.8, 29.0)), ("d", (0.85, 28.0))):
        s.on_trial_result(None, trial(name), result(1, *values))
    assert s.on_trial_result(None, trial("e"), result(1, 0.5, 20.0)) == STOP  # where a stands now
    assert s.on_trial_result(None, trial("a"), result(1, 0.5, 20.0)) == CONTINUE  # resumed: its promotion stands
    assert "a" not in s.stopped_trials


def test_results_without_epoch_are_ignored():
    s = scheduler()
    assert s.on_trial_result(None, trial("a"), {"accuracy": 0.1, "psnr": 1.0}) == CONTINUE
    assert s.records("snr20_kn1-12") == {}


# -- state that survives Tuner.restore ---------------------------------------------------------

HISTORY = [("a", result(1, 0.8, 30.0)), ("b", result(1, 0.5, 20.0)), ("c", result(1, 0.9, 25.0)),
           ("a", result(3, 0.85, 31.0)), ("c", result(3, 0.92, 26.0))]  # fmt: skip
NEXT = [("d", result(1, 0.7, 29.0)), ("e", result(3, 0.86, 30.5)), ("f", result(3, 0.6, 20.0)),
        ("b", result(2, 0.99, 40.0)), ("d", result(3, 0.95, 35.0))]  # fmt: skip


def test_second_instance_on_the_same_state_path_makes_the_same_decisions(tmp_path):
    reference = scheduler()
    expected = [reference.on_trial_result(None, trial(t), r) for t, r in HISTORY + NEXT][len(HISTORY) :]

    path = tmp_path / "scheduler.json"
    first = scheduler(state_path=path)
    for t, r in HISTORY:
        first.on_trial_result(None, trial(t), r)
    assert json.loads(path.read_text())["stopped_trials"] == {"b": 1}

    second = scheduler(state_path=path)
    assert [second.on_trial_result(None, trial(t), r) for t, r in NEXT] == expected
    assert second.stopped_trials == reference.stopped_trials
    assert second.records("snr20_kn1-12") == reference.records("snr20_kn1-12")
    # what Tuner.restore does: unpickle the scheduler pickled when the Tuner was created
    assert pickle.loads(pickle.dumps(first)).stopped_trials == reference.stopped_trials


def test_save_and_restore_round_trip(tmp_path):
    s = scheduler()
    for t, r in HISTORY:
        s.on_trial_result(None, trial(t), r)
    s.save(str(tmp_path / "ckpt.json"))
    restored = scheduler(state_path=tmp_path / "state.json")
    restored.restore(str(tmp_path / "ckpt.json"))
    assert (tmp_path / "state.json").exists()  # the restored state is persisted at once
    assert restored.records("snr20_kn1-12") == s.records("snr20_kn1-12")
    assert [restored.on_trial_result(None, trial(t), r) for t, r in NEXT] == [
        s.on_trial_result(None, trial(t), r) for t, r in NEXT
    ]


# -- argument validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grace_epochs": 0}, r"`grace_epochs` is 0, but must be an integer >= 1"),
        ({"grace_epochs": 1.5}, r"`grace_epochs` is 1.5"),
        ({"reduction_factor": 1}, r"`reduction_factor` is 1, but must be a finite number > 1"),
        ({"reduction_factor": math.inf}, r"`reduction_factor` is inf"),
        ({"max_epochs": 2, "grace_epochs": 3}, r"`max_epochs` is 2, but must be an integer >= grace_epochs \(3\)"),
        ({"metrics": []}, r"`metrics` is \(\)"),
        ({"metrics": ["accuracy", "accuracy"]}, r"`metrics`"),
        ({"modes": ["max", "down"]}, r"`modes` is \('max', 'down'\)"),
    ],
)
def test_invalid_arguments_name_parameter_value_and_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scheduler(**kwargs)


def test_min_mode_metric_is_negated():
    s = scheduler(metrics=["loss"], modes=["min"])
    s.on_trial_result(None, trial("a"), {"epoch": 1, "loss": 0.1})
    assert s.on_trial_result(None, trial("b"), {"epoch": 1, "loss": 0.5}) == STOP
