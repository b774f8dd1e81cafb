"""A study from start to end: preflight, the study folder, the run itself, and its outcome.

- :mod:`.preflight`: data, checkpoint, tracking server, resources and storage checked first;
- :mod:`.folder`: the study folder, everything a study needs to resume;
- :mod:`.runner`: ``run_study`` / ``resume_study`` (Ray Tune + MLflow, composed);
- :mod:`.outcome`: the totals, the summary and the exit code;
- :mod:`.quiet`: library logging to the study's log file instead of the terminal.
"""


def __getattr__(name):  # lazy: the folder is read by reports without importing Ray Tune
    if name in ("run_study", "resume_study"):
        from orchestrator.study import runner

        return getattr(runner, name)
    if name in ("StudyOutcome", "summary_lines"):
        from orchestrator.study import outcome

        return getattr(outcome, name)
    raise AttributeError(name)


__all__ = ["StudyOutcome", "resume_study", "run_study", "summary_lines"]
