"""Fronts, hypervolumes, compute, picker, schema and paper points on a synthetic trials table (in memory)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import orchestrator.reporting as reporting
from orchestrator.pareto import hypervolume
from orchestrator.reporting import (
    COLUMNS,
    DEFAULT_REFERENCE,
    arrow_schema,
    compute_budget,
    conform,
    front_table,
    hypervolume_progress,
    hypervolumes,
    paper_points,
    parse_constraint,
    pick,
    rank_trials,
)
from report_fixtures import synthetic_trials

REF = DEFAULT_REFERENCE


@pytest.fixture(scope="module")
def trials() -> pd.DataFrame:
    return synthetic_trials(seed=3)


def _finite_completed(df):
    return (df["status"] == "completed") & df["accuracy"].notna() & df["psnr"].notna()


def test_synthetic_table_covers_every_status_and_several_conditions(trials):
    assert set(trials["status"]) == {"completed", "pruned", "failed", "running"}
    assert trials["condition"].nunique() >= 3 and trials["method"].nunique() == 4


def test_ranks_only_completed_finite_trials(trials):
    ranked = rank_trials(trials)
    assert (ranked["pareto_rank"].notna() == _finite_completed(ranked)).all()
    assert (ranked["pareto_rank"].dropna() >= 1).all()


ARM = ["condition", "method"]  # each method has its own front in each condition


def test_ranks_are_per_condition_and_method(trials):
    ranked = rank_trials(trials)
    for (condition, method), group in ranked[_finite_completed(ranked)].groupby(["condition", "method"]):
        alone = rank_trials(trials[(trials["condition"] == condition) & (trials["method"] == method)])
        assert alone.loc[group.index, "pareto_rank"].tolist() == group["pareto_rank"].tolist()


def test_ranks_do_not_depend_on_the_index(trials):
    shuffled = trials.sample(frac=1.0, random_state=0)
    shuffled.index = [0] * len(shuffled)  # duplicated labels
    expected = rank_trials(trials).set_index("trial_id")["pareto_rank"]
    got = rank_trials(shuffled).set_index("trial_id")["pareto_rank"]
    pd.testing.assert_series_equal(got.loc[expected.index], expected)
    assert hypervolumes(shuffled, REF).set_index(ARM)["hypervolume"].to_dict() == pytest.approx(
        hypervolumes(trials, REF).set_index(ARM)["hypervolume"].to_dict()
    )


def test_completed_trial_with_nan_objective_is_listed_but_not_ranked(trials):
    df = trials.copy()
    i = df.index[df["status"] == "completed"][0]
    df.loc[i, "psnr"] = math.nan
    assert pd.isna(rank_trials(df).loc[i, "pareto_rank"])


def test_front_members_have_rank_one_and_nothing_dominates_them(trials):
    front = front_table(trials)
    assert (front["pareto_rank"] == 1).all()
    done = trials[_finite_completed(trials)]
    for _, f in front.iterrows():
        same = done[(done["condition"] == f["condition"]) & (done["method"] == f["method"])]
        better = (same["accuracy"] >= f["accuracy"]) & (same["psnr"] >= f["psnr"])
        strictly = (same["accuracy"] > f["accuracy"]) | (same["psnr"] > f["psnr"])
        assert not (better & strictly).any()


def test_hypervolumes_equal_an_independent_recomputation(trials):
    table = hypervolumes(trials, REF).set_index(ARM)
    front = front_table(trials)
    for arm, group in trials.groupby(ARM):
        done = group[_finite_completed(group)]
        assert table.loc[arm, "hypervolume"] == pytest.approx(
            hypervolume(done[["accuracy", "psnr"]].to_numpy(), REF)
        )
        assert table.loc[arm, "n_completed"] == (group["status"] == "completed").sum()
        assert table.loc[arm, "n_pruned"] == (group["status"] == "pruned").sum()
        assert table.loc[arm, "n_failed"] == (group["status"] == "failed").sum()
        assert table.loc[arm, "front_size"] == ((front["condition"] == arm[0]) & (front["method"] == arm[1])).sum()


def test_hypervolume_progress_counts_every_finished_trial(trials):
    progress = hypervolume_progress(trials, REF)
    for (condition, method), p in progress.groupby(ARM):
        group = trials[(trials["condition"] == condition) & (trials["method"] == method)
                       & (trials["status"] != "running")].sort_values("end_time")
        last = p.iloc[-1]
        upto = group[group["end_time"] <= last["end_time"]]
        assert last["trials_finished"] == len(upto)
        assert last["epochs_spent"] == upto["epochs_run"].sum()  # pruned and failed epochs included
        assert last["hypervolume"] == pytest.approx(
            hypervolumes(trials, REF).set_index(ARM).loc[(condition, method), "hypervolume"]
        )
        assert (np.diff(p["hypervolume"]) >= -1e-12).all() and (np.diff(p["trials_finished"]) > 0).all()
        assert len(p) == len(group)  # every finished trial is a step; only completed ones can raise it
        rises = p.index[np.diff(p["hypervolume"], prepend=0.0) > 1e-12]
        assert set(p.loc[rises, "trial_id"]) <= set(group.loc[_finite_completed(group), "trial_id"])


def test_compute_budget_counts_pruned_and_failed_epochs(trials):
    budget = compute_budget(trials)
    assert budget["epochs_run"] == trials["epochs_run"].sum()
    assert budget["epochs_no_pruning"] == trials["epochs_total"].sum()
    assert budget["fraction_saved"] == pytest.approx(1 - budget["epochs_run"] / budget["epochs_no_pruning"])
    assert 0 < budget["fraction_saved"] < 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("accuracy>=0.85", ("accuracy", ">=", 0.85)),
        (" psnr >= 30 ", ("psnr", ">=", 30.0)),
        ("psnr<=25.5", ("psnr", "<=", 25.5)),
        ("accuracy > .9", ("accuracy", ">", 0.9)),
        ("psnr<3e1", ("psnr", "<", 30.0)),
    ],
)
def test_parse_constraint(text, expected):
    c = parse_constraint(text)
    assert (c.metric, c.op, c.value) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("ssim>=0.5", "unknown metric 'ssim'"),
        ("accuracy=>0.8", "malformed"),
        ("accuracy>=", "malformed"),
        ("accuracy 0.8", "malformed"),
        ("", "malformed"),
        ("accuracy>=85", "did you mean 0.85"),
    ],
)
def test_bad_constraints_raise_clear_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_constraint(text)


@pytest.mark.parametrize("constraint", ["accuracy>=0.85", "psnr>=30", "accuracy>0.6", "psnr<30", "accuracy<=0.9"])
def test_pick_takes_the_best_other_objective_among_qualifying_trials(trials, constraint):
    c = parse_constraint(constraint)
    picked = pick(trials, constraint).set_index("condition")
    ranked = rank_trials(trials)
    for condition, group in trials[_finite_completed(trials)].groupby("condition"):
        ok = group[c.holds(group)]
        row = picked.loc[condition]
        if ok.empty:
            assert row["result"] == "none" and pd.isna(row["trial_id"])
            continue
        assert row["result"] == "picked"
        assert row[c.other] == ok[c.other].max() and row["trial_id"] in set(ok["trial_id"])
        if c.op in (">=", ">"):
            assert ranked.set_index("trial_id").loc[row["trial_id"], "pareto_rank"] == 1


def test_pick_says_none_when_nothing_qualifies(trials):
    picked = pick(trials, "accuracy>=0.999")
    assert (picked["result"] == "none").all()
    assert picked["note"].str.contains("no completed trial meets accuracy>=0.999").all()
    assert set(picked["condition"]) == set(trials["condition"])


def test_conform_names_missing_columns_and_fills_optional_ones(trials):
    with pytest.raises(ValueError, match=r"misses required columns \['psnr', 'status'\]"):
        conform(trials.drop(columns=["psnr", "status"]))
    slim = conform(trials.drop(columns=["final_accuracy", "tau", "end_time"]))
    assert list(slim.columns) == [c.name for c in COLUMNS]
    assert slim["tau"].isna().all()


def test_conform_rejects_unknown_status_and_null_ids(trials):
    bad = trials.copy()
    bad.loc[0, "status"] = "done"
    with pytest.raises(ValueError, match="'status' has values \\['done'\\]"):
        conform(bad)
    bad = trials.copy()
    bad.loc[0, "mlflow_run_id"] = None
    with pytest.raises(ValueError, match="'mlflow_run_id' must not be null"):
        conform(bad)


def test_every_column_has_a_description_and_is_documented_for_users():
    text = (Path(reporting.__file__).parent / "COLUMNS.md").read_text()
    for field in arrow_schema():
        assert field.metadata[b"description"].strip()
        assert f"`{field.name}`" in text, f"COLUMNS.md does not explain {field.name}"


def test_paper_points_are_the_stated_values():
    acc = paper_points(20.0, "accuracy").set_index(["method", "kn"])["value"]
    assert acc[("proposed", 1 / 48)] == 0.8765 and acc[("proposed", 1 / 24)] == 0.9014
    assert acc[("deepsc", 1 / 2.5)] == 0.91
    assert acc[("deepsc", 1 / 48)] == pytest.approx(0.8765 - 0.01) and acc[("deepjscc", 1 / 48)] == pytest.approx(
        0.8765 - 0.56
    )
    psnr = paper_points(20.0, "psnr").set_index("method")["value"]
    assert psnr.to_dict() == {"proposed": 38.75, "deepjscc": 39.27, "deepsc": 36.91}
    points = paper_points()
    assert points["source"].str.len().gt(10).all()
    assert set(points.loc[points["derived"], "method"]) == {"deepsc", "deepjscc"}
    assert paper_points(5.0).empty  # the text states no 5 dB values


def test_gains_compare_each_methods_best_accuracy_front_member(trials):
    """The headline table, recomputed by brute force: the highest-accuracy completed trial of each method
    in a condition is always on that method's front, so its accuracy and PSNR are the comparison."""
    from orchestrator.reporting.gains import method_gains

    gains = method_gains(trials).set_index(["condition", "baseline"])
    done = trials[_finite_completed(trials)]
    expected = 0
    for condition, group in done.groupby("condition"):
        best = {m: g.sort_values(["accuracy", "psnr"], ascending=False).iloc[0] for m, g in group.groupby("method")}
        if "proposed" not in best:
            continue
        for baseline, b in best.items():
            if baseline == "proposed":
                continue
            expected += 1
            row, p = gains.loc[(condition, baseline)], best["proposed"]
            assert row["accuracy_gain_points"] == pytest.approx(100 * (p["accuracy"] - b["accuracy"]))
            assert row["psnr_cost_db"] == pytest.approx(b["psnr"] - p["psnr"])
    assert expected >= 3 and len(gains) == expected
