"""orchestrator.pareto against brute-force definitions, on random, tied, duplicated and grid points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.pareto import hypervolume, hypervolume_trace, nondominated_mask, pareto_ranks

_coord = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _dominates(a, b) -> bool:
    """a dominates b when maximising: at least as good everywhere and better somewhere."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def brute_ranks(points) -> list[int]:
    """Rank 1 = dominated by no point; rank k = dominated by none once ranks < k are removed. O(n²) per front."""
    ranks, remaining, k = [0] * len(points), set(range(len(points))), 1
    while remaining:
        front = {i for i in remaining if not any(_dominates(points[j], points[i]) for j in remaining)}
        for i in front:
            ranks[i] = k
        remaining -= front
        k += 1
    return ranks


def brute_hypervolume_2d(points, ref) -> float:
    """Sweep over x (descending): add the strip each point raises above the best y seen so far."""
    pts = sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), key=lambda p: (-p[0], -p[1]))
    area, best_y = 0.0, ref[1]
    for i, (x, y) in enumerate(pts):
        best_y = max(best_y, y)
        next_x = pts[i + 1][0] if i + 1 < len(pts) else ref[0]
        area += (x - next_x) * (best_y - ref[1])
    return area


def point_sets(dims: int):
    real = st.lists(st.tuples(*[_coord] * dims), min_size=1, max_size=40)
    grid = st.lists(st.tuples(*[st.integers(0, 4).map(float)] * dims), min_size=1, max_size=40)  # many ties
    repeated = st.lists(st.tuples(*[_coord] * dims), min_size=1, max_size=6).flatmap(
        lambda pool: st.lists(st.sampled_from(pool), min_size=1, max_size=30)  # exact duplicates
    )
    return st.one_of(real, grid, repeated)


@settings(max_examples=300, deadline=None)
@given(point_sets(2))
def test_ranks_match_brute_force_2d(points):
    assert pareto_ranks(points).tolist() == brute_ranks(points)


@settings(max_examples=100, deadline=None)
@given(point_sets(3))
def test_ranks_match_brute_force_3d(points):
    assert pareto_ranks(points).tolist() == brute_ranks(points)


@settings(max_examples=100, deadline=None)
@given(point_sets(2))
def test_duplicates_share_a_rank_and_front_is_rank_one(points):
    ranks = pareto_ranks(points)
    by_point = {}
    for p, r in zip(points, ranks):
        assert by_point.setdefault(p, r) == r
    assert (nondominated_mask(points) == (ranks == 1)).all()


@settings(max_examples=200, deadline=None)
@given(point_sets(2), st.tuples(_coord, _coord))
def test_hypervolume_matches_sweep(points, ref):
    expected = brute_hypervolume_2d(points, ref)
    assert hypervolume(points, ref) == pytest.approx(expected, rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(point_sets(2))
def test_hypervolume_trace_grows_to_the_total(points):
    trace = hypervolume_trace(points, (-1e3 - 1, -1e3 - 1))
    assert (np.diff(trace) >= -1e-6 * max(1.0, abs(trace[-1]))).all()
    assert trace[-1] == pytest.approx(hypervolume(points, (-1e3 - 1, -1e3 - 1)))


def test_empty_input_gives_no_ranks_and_zero_volume():
    assert pareto_ranks(np.zeros((0, 2))).tolist() == []
    assert hypervolume(np.zeros((0, 2)), (0.1, 10.0)) == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_raises_a_clear_error(bad):
    points = [[0.9, 30.0], [0.8, bad], [0.7, 35.0]]
    with pytest.raises(ValueError, match=r"NaN or infinite values at rows \[1\]"):
        pareto_ranks(points)
    with pytest.raises(ValueError, match="NaN or infinite"):
        hypervolume(points, (0.1, 10.0))


def test_wrong_shape_raises():
    with pytest.raises(ValueError, match="2-D"):
        pareto_ranks([0.9, 30.0])
