"""A trial's exception as one line: for the MLflow tag, the summary and the progress view."""

from __future__ import annotations


def failure_reason(err: BaseException) -> str:
    """The exception type and message on one line (the traceback goes to an artifact)."""
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text}"[:1000]


def error_reason(trial) -> str:
    """The trial's exception as one line, from the files Tune has just written on the driver."""
    import cloudpickle

    try:  # Tune writes the error to the trial's local staging folder first, storage later
        with open(trial.pickled_error_file, "rb") as f:
            err = cloudpickle.load(f)
        return failure_reason(getattr(err, "cause", None) or err)
    except Exception:  # unpicklable, or no file: fall back to the text trace
        pass
    try:
        with open(trial.error_file) as f:
            lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
        return lines[-1][:1000] if lines else "unknown error"
    except (OSError, TypeError):
        return "unknown error"
