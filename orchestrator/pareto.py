"""Pareto ranks and hypervolumes of (accuracy, PSNR) points: pure numpy on top of moocore.

Both objectives are maximised. moocore does the sorting and the hypervolume (it minimises
by default, hence ``maximise=True`` everywhere); this module only adds input checks, 1-based
ranks and the "hypervolume as the study progressed" trace that moocore has no call for.
"""

from __future__ import annotations

import moocore
import numpy as np


def _checked(points) -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n_points × n_objectives), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        bad = np.flatnonzero(~np.isfinite(pts).all(axis=1)).tolist()
        raise ValueError(f"points contain NaN or infinite values at rows {bad}: rank only completed, finite trials")
    return pts


def pareto_ranks(points) -> np.ndarray:
    """Rank of every point by non-dominated sorting: 1 = on the front, 2 = the next front, …

    Duplicated points share a rank; a point equal to another in one objective and better in the
    other dominates it (the usual weak-dominance definition).
    """
    pts = _checked(points)
    if len(pts) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(moocore.pareto_rank(pts, maximise=True), dtype=int) + 1


def nondominated_mask(points) -> np.ndarray:
    """True for the points on the first front (duplicates of a front point included)."""
    return pareto_ranks(points) == 1


def hypervolume(points, reference) -> float:
    """Area dominated by ``points`` and bounded below by ``reference`` (0 when none beats it)."""
    pts = _checked(points)
    ref = np.asarray(reference, dtype=float)
    pts = pts[(pts > ref).all(axis=1)] if len(pts) else pts
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref, maximise=True))


def hypervolume_trace(points, reference) -> np.ndarray:
    """Hypervolume of the first i points, for i = 1..n (points in the order they completed)."""
    pts = _checked(points)
    return np.array([hypervolume(pts[: i + 1], reference) for i in range(len(pts))])
