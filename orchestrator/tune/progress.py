"""A live terminal view of a study: trials per arm (condition × method) by state, and the current front size."""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict

from ray.tune import Callback

from orchestrator.objectives import METRICS
from orchestrator.outcomes import BUDGET_KEY, COMPLETED, FAILED, FINISHED, RUNNING, result_epoch, trial_outcome
from orchestrator.pareto import nondominated_mask
from orchestrator.spec.arms import ARM_KEY

STATES = (RUNNING, *FINISHED)


class StudyProgress:
    """Counts and fronts per arm, fed by trial events (pure bookkeeping, no I/O)."""

    def __init__(self, budgets: dict[str, int]):
        self.budgets = dict(budgets)  # arm name -> trials
        self.state: dict[str, tuple[str, str]] = {}  # trial id -> (arm, state)
        self.points: dict[str, tuple[str, tuple[float, ...]]] = {}  # completed trial id -> (arm, objectives)

    def update(self, trial_id: str, arm: str, state: str, result: dict | None = None) -> None:
        self.state[trial_id] = (arm, state)
        if state == COMPLETED and result:
            values = tuple(float(result.get(m, math.nan)) for m in METRICS)
            if all(math.isfinite(v) for v in values):
                self.points[trial_id] = (arm, values)

    def counts(self, arm: str) -> dict[str, int]:
        c = defaultdict(int)
        for a, st in self.state.values():
            if a == arm:
                c[st] += 1
        return c

    def front_size(self, arm: str) -> int:
        pts = [v for a, v in self.points.values() if a == arm]
        return int(nondominated_mask(pts).sum()) if pts else 0

    def started(self) -> int:
        return len(self.state)

    def table(self) -> list[str]:
        width = max([len("condition/method")] + [len(a) for a in self.budgets])
        head = f"{'condition/method':<{width}}  {'done':>7}  " + "  ".join(f"{s:>9}" for s in STATES) + "  front"
        lines = [head]
        for arm, budget in self.budgets.items():
            c = self.counts(arm)
            done = sum(c[s] for s in FINISHED)
            lines.append(f"{arm:<{width}}  {done:>3}/{budget:<3}  "
                         + "  ".join(f"{c[s]:>9}" for s in STATES) + f"  {self.front_size(arm):>5}")
        return lines


class ProgressView(Callback):
    """Redraws the table in place on a terminal; prints it every ``interval_s`` otherwise.

    Under the table: the elapsed time and an estimate of the time left, from the epochs finished
    since this start. The estimate assumes no further pruning, so it is an upper bound.
    """

    def __init__(self, budgets: dict[str, int], epochs_per_trial: int = 0, interval_s: float = 15.0, stream=None):
        self.progress = StudyProgress(budgets)
        self.epochs_per_trial = epochs_per_trial
        self.interval_s = interval_s
        self.stream = stream
        self._drawn = 0
        self._last = 0.0
        self._dirty = True
        self._start = time.monotonic()
        self._epochs_now = 0  # epochs finished since this start (the rate of the estimate)
        self._epoch_of: dict[str, tuple[int, int]] = {}  # running trial id -> (epoch, epochs_total)
        self._swept = False

    def _out(self):
        return self.stream or sys.stderr

    def _mark(self, trial, state, result=None):
        self.progress.update(trial.trial_id, trial.config.get(ARM_KEY, "?"), state, result)
        self._dirty = True

    def on_trial_start(self, iteration, trials, trial, **info):
        self._mark(trial, RUNNING)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch, total = result_epoch(result), result.get(BUDGET_KEY)
        if epoch is not None and total is not None:
            before = self._epoch_of.get(trial.trial_id, (0, 0))[0]
            self._epochs_now += max(0, epoch - before)
            self._epoch_of[trial.trial_id] = (epoch, int(total))
            self._dirty = True

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._epoch_of.pop(trial.trial_id, None)
        self._mark(trial, trial_outcome(trial.last_result, errored=False).status, trial.last_result)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._epoch_of.pop(trial.trial_id, None)
        self._mark(trial, FAILED)

    def on_step_begin(self, iteration, trials, **info):
        # Once per start: trials a restore found ended after this view's last snapshot (settled, or
        # adopted) never end again in this run, so they are counted from Tune's record.
        if not self._swept:
            self._swept = True
            for trial in trials:
                finished = self.progress.state.get(trial.trial_id, ("", RUNNING))[1] in FINISHED
                if trial.status == "TERMINATED" and not finished:
                    self.on_trial_complete(iteration, trials, trial)
                elif trial.status == "ERROR" and not finished:
                    self.on_trial_error(iteration, trials, trial)

    def on_step_end(self, iteration, trials, **info):
        self.draw()

    def on_experiment_end(self, trials, **info):
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        out = self._out()
        tty = hasattr(out, "isatty") and out.isatty()
        now = time.monotonic()
        if not force and (not self._dirty or (not tty and now - self._last < self.interval_s)):
            return
        lines = self.progress.table() + [self.timing()]
        if tty and self._drawn:
            out.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the table's first line, clear below
        out.write("\n".join(lines) + "\n")
        out.flush()
        self._drawn = len(lines) if tty else 0
        self._last, self._dirty = now, False

    def timing(self) -> str:
        elapsed = time.monotonic() - self._start
        line = f"elapsed {_clock(elapsed)}"
        if self._epochs_now and self.epochs_per_trial:
            p = self.progress
            unstarted = max(0, sum(p.budgets.values()) - p.started())
            running = [tid for tid, (_, state) in p.state.items() if state == RUNNING]
            left = unstarted * self.epochs_per_trial + sum(
                t - e for e, t in (self._epoch_of.get(tid, (0, self.epochs_per_trial)) for tid in running))
            line += f", {self._epochs_now} epochs done, at most {_clock(left * elapsed / self._epochs_now)} left"
        return line

    def get_state(self):
        return {"state": self.progress.state, "points": self.progress.points}

    def set_state(self, state):
        self.progress.state, self.progress.points = state["state"], state["points"]


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
