"""The Optuna side of a study: what each Tune outcome is told as, and telling after a restore."""

from __future__ import annotations

import itertools

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.objectives import METRICS, MODES
from orchestrator.tune.search import INSTEAD_OF_ATTR, ParetoOptunaSearch, SpaceFunction
from orchestrator.spec import SearchSpace


def _searcher(storage_url: str, name: str = "s/c", space: dict | None = None) -> ParetoOptunaSearch:
    space = SearchSpace.model_validate(space or {"alpha1": {"low": 0.1, "high": 0.9}, "tau": {"low": 0.1, "high": 1.0}})
    return ParetoOptunaSearch(space=SpaceFunction(space, "proposed"), metric=list(METRICS), mode=list(MODES),
                              sampler=optuna.samplers.RandomSampler(seed=0), study_name=name,
                              storage=optuna.storages.RDBStorage(storage_url))


def _states(storage_url: str, name: str = "s/c") -> dict[str, str]:
    study = optuna.load_study(study_name=name, storage=storage_url)
    return {t.user_attrs.get("tune_trial_id"): t.state.name for t in study.trials}


@pytest.mark.parametrize(("result", "error", "state"), [
    ({"epoch": 3, "epochs_total": 3, "accuracy": 0.5, "psnr": 20.0}, False, "COMPLETE"),
    ({"epoch": 1, "epochs_total": 3, "accuracy": 0.5, "psnr": 20.0}, False, "PRUNED"),  # stopped early
    ({"epoch": 3, "epochs_total": 3, "accuracy": float("nan"), "psnr": 20.0}, False, "FAIL"),
    ({"epoch": 2, "epochs_total": 3, "accuracy": 0.5, "psnr": 20.0}, True, "FAIL"),
    ({"failure_reason": "TrialDiverged: training loss is nan in stage 1"}, False, "FAIL"),  # returned, not raised
])
def test_tune_outcomes_are_told_truthfully(tmp_path, result, error, state):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = _searcher(url)
    assert set(searcher.suggest("t1")) >= {"alpha1", "tau"}
    searcher.on_trial_complete("t1", result=result, error=error)
    assert _states(url) == {"t1": state}
    study = optuna.load_study(study_name="s/c", storage=url)
    if state == "COMPLETE":
        assert study.trials[0].values == [0.5, 20.0]
    if state == "PRUNED":
        assert study.trials[0].user_attrs["pruned_at_epoch"] == 1
        assert study.best_trials == []  # a pruned trial never enters the front


def test_a_trial_told_before_an_interruption_is_not_told_again(tmp_path):
    """Tune snapshots its searcher every few seconds; a trial finished after the last snapshot is
    finished in the Optuna storage but not in the restored searcher, which Tune then tells again."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = _searcher(url)
    searcher.suggest("t1")
    searcher.suggest("t2")
    searcher.save(str(tmp_path / "snapshot.pkl"))  # Tune's last snapshot before the kill
    searcher.on_trial_complete("t1", result={"epoch": 1, "epochs_total": 3, "accuracy": 0.2, "psnr": 12.0})

    restored = _searcher(url)
    restored.restore(str(tmp_path / "snapshot.pkl"))
    restored.on_trial_complete("t1", result={"epoch": 2, "epochs_total": 3, "accuracy": 0.3, "psnr": 14.0})
    restored.on_trial_complete("t1", error=True)  # and once more, as Tune does when stopping fails
    restored.on_trial_complete("t2", result={"epoch": 3, "epochs_total": 3, "accuracy": 0.4, "psnr": 15.0})
    assert _states(url) == {"t1": "PRUNED", "t2": "COMPLETE"}
    trial = optuna.load_study(study_name="s/c", storage=url).trials[0]
    assert trial.user_attrs["pruned_at_epoch"] == 1  # the first verdict stands


def test_a_configuration_is_not_run_twice_until_the_space_is_exhausted(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = {"proj_dim": {"choices": [16, 32, 64]}, "alpha1": {"choices": [0.5, 0.9]}}  # 6 configurations
    searcher = _searcher(url, space=space)
    seen = [tuple(sorted(searcher.suggest(f"t{i}").items())) for i in range(6)]
    assert len(set(seen)) == 6  # with seed 0 the random sampler repeats itself within these draws
    study = optuna.load_study(study_name="s/c", storage=url)
    rejected = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert rejected and all(t.state == TrialState.FAIL for t in rejected)
    assert all(study.trials[t.user_attrs["duplicate_of"]].params == t.params for t in rejected)
    searcher.on_trial_complete("t0", result={"epoch": 1, "epochs_total": 3, "accuracy": 0.2, "psnr": 12.0})
    seventh = tuple(sorted(searcher.suggest("t6").items()))  # nothing new is left: the repeat runs
    assert seventh in seen


def test_a_repeat_gets_the_nearest_unexplored_configuration_in_one_more_ask(tmp_path):
    """A repeat is told FAIL once and replaced by the unexplored configuration with the fewest
    parameters changed: one extra Optuna trial per repeat, not one per re-ask."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = {"alpha2": {"choices": [0.8, 0.9, 0.97]}, "tau": {"choices": [0.05, 0.2, 1.0]},
             "proj_dim": {"choices": [16, 64]}}  # 18 configurations
    searcher = _searcher(url, space=space)
    for i in range(15):
        searcher.suggest(f"t{i}")
    trials = optuna.load_study(study_name="s/c", storage=url).trials
    rejected = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert rejected and len(rejected) <= 15
    for t in rejected:
        replacement = next(r for r in trials if r.user_attrs.get(INSTEAD_OF_ATTR) == t.number)
        explored = {tuple(sorted(e.params.items())) for e in trials
                    if e.number < replacement.number and e.state != TrialState.FAIL}
        assert tuple(sorted(replacement.params.items())) not in explored
        changed = sum(replacement.params[k] != t.params[k] for k in t.params)
        # no unexplored configuration was nearer than the one chosen
        lists = [p["choices"] for p in space.values()]
        every = (tuple(sorted(zip(space, values))) for values in itertools.product(*lists))
        nearest = min(sum(dict(c)[k] != t.params[k] for k in t.params) for c in every if c not in explored)
        assert changed == nearest
    configurations = [tuple(sorted(t.params.items())) for t in trials if t.state != TrialState.FAIL]
    assert len(configurations) == len(set(configurations)) == 15


def test_the_nsga2_sampler_pickles_as_tune_pickles_the_searcher():
    """Optuna 5.1's GA samplers hold a lock that does not pickle; Tune pickles the searcher."""
    import pickle

    from orchestrator.tune.search import PruningAwareNSGAII

    sampler = PruningAwareNSGAII(population_size=4, seed=3)
    again = pickle.loads(pickle.dumps(sampler))
    assert again._population_size == 4 and hasattr(again, "_thread_lock")
