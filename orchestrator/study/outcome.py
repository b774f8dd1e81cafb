"""What a study run ends with: the totals, the summary a person reads, and an exit code that means something.

Exit codes: 0 when every arm (condition × method) has a front (at least one completed trial), 1 when
an arm has none (the most common failure reason is named), 130 when interrupted; bad input
and preflight failures exit with 2 before anything starts (see :mod:`orchestrator.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.outcomes import COMPLETED, FAILED, FINISHED
from orchestrator.spec.redact import redact_uri
from orchestrator.tracking.runs import experiment_url
from orchestrator.tracking.study_run import StudyTotals

EXIT_OK, EXIT_NO_FRONT, EXIT_INTERRUPTED = 0, 1, 130


@dataclass(frozen=True)
class StudyOutcome:
    folder: Path
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    totals: StudyTotals
    trials_expected: int
    arms: list[str]  # "<condition>/<method>": each must end with a front
    log_file: Path
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM; ``semtune resume`` continues it

    @property
    def counts(self) -> dict[str, int]:
        return self.totals.counts

    @property
    def front_sizes(self) -> dict[str, int]:
        return self.totals.front_sizes

    @property
    def epochs_run(self) -> int:
        return self.totals.epochs_run

    @property
    def epochs_no_pruning(self) -> int:
        return self.totals.epochs_no_pruning

    @property
    def arms_without_front(self) -> list[str]:
        return [c for c in self.arms if not self.totals.front_sizes.get(c)]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_NO_FRONT if self.arms_without_front else EXIT_OK

    def most_common_failure(self) -> tuple[str, int] | None:
        reasons = self.totals.reasons
        return max(reasons.items(), key=lambda kv: kv[1]) if reasons else None


def summary_lines(outcome: StudyOutcome) -> list[str]:
    c = outcome.counts
    states = ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
    if outcome.interrupted:
        done = sum(n for s, n in c.items() if s in FINISHED)
        head = [f"study interrupted: {done} of {outcome.trials_expected} trials finished — {states}",
                f"resume it with: semtune resume {outcome.folder}"]
    else:
        head = [f"study finished: {sum(c.values())} trials — {states}"]
    t = outcome.totals
    lines = [
        *head,
        f"epochs run: {t.epochs_run} of {t.epochs_no_pruning} without pruning "
        f"({t.saved_fraction:.0%} saved by pruning)",
        "front sizes: " + ", ".join(f"{k}: {outcome.front_sizes.get(k, 0)}" for k in outcome.arms),
        f"study folder: {outcome.folder}",
    ]
    if not outcome.tracking_uri:
        lines.append("MLflow: off (mlflow: false): Tune's results in the study folder are all there is")
    else:
        browse = experiment_url(outcome.tracking_uri, outcome.experiment_id)
        lines += [f"MLflow: {redact_uri(outcome.tracking_uri)} (experiment {outcome.experiment_id}, "
                  f"parent run {outcome.parent_run_id})",
                  f"  browse: mlflow ui --backend-store-uri {outcome.tracking_uri}, then open {browse}"
                  if outcome.tracking_uri.startswith("sqlite:") else f"  browse: {browse}"]
    if c.get(FAILED):
        lines.append(f"log (trial tracebacks): {outcome.log_file}")
    if c.get(COMPLETED) and outcome.tracking_uri:
        lines.append(f"report: semtune report {outcome.folder}")
    return lines


def verdict_line(outcome: StudyOutcome) -> str | None:
    """The one ``error:`` line of a study that did not produce a front in every condition."""
    missing = outcome.arms_without_front
    if outcome.interrupted or not missing:
        return None
    where = "any condition and method" if len(missing) == len(outcome.arms) else ", ".join(missing)
    failure = outcome.most_common_failure()
    why = f"; most common failure ({failure[1]} trial{'s' * (failure[1] != 1)}): {failure[0]}" if failure else ""
    return f"error: study: no trial completed in {where}, so there is no front{why}"
