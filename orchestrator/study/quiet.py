"""A quiet terminal: the libraries' logging goes to ``<study folder>/semtune.log``, not to the screen.

Ray, Tune, MLflow, Optuna and alembic all log at INFO to stderr by default (database migrations,
the experiment box, TensorBoard hints, every trial error's traceback). During a study those
records go to the study's log file instead, so the terminal shows only the progress table and
the summary, and the summary prints the log's path. ``--verbose`` leaves logging as it was.
Credentials in URIs are masked in the log file (a library may log the address it connects to).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

from orchestrator.spec.redact import redact_uri

LIBRARIES = ("ray", "mlflow", "optuna", "alembic", "urllib3", "filelock", "py.warnings", "orchestrator", "trainables")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Environment read by Ray and Tune when they start: no new-style Tune console output, no
# TensorBoard hint, no usage-stats banner. Set only where the user has not chosen otherwise.
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_USAGE_STATS_ENABLED": "0",
             "RAY_DEDUP_LOGS": "0"}


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks credentials in URIs, in the message and in tracebacks alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_uri(super().format(record))


def _file_handler(path: Path) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:  # an unwritable study folder: the preflight names it; nothing to log to meanwhile
        handler = logging.NullHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    return handler


@contextlib.contextmanager
def study_log(path: Path, verbose: bool = False):
    """Within this block, library logging goes to ``path`` (verbose: left as it is, and also to ``path``)."""
    handler = _file_handler(path)
    saved = {name: (lg.handlers[:], lg.level, lg.propagate)
             for name in ("", *LIBRARIES) for lg in [logging.getLogger(name)]}
    env = {k: v for k, v in QUIET_ENV.items() if k not in os.environ}
    try:
        logging.captureWarnings(True)
        if not verbose:
            os.environ.update(env)
            _quiet_optuna()
        for name in LIBRARIES:
            lg = logging.getLogger(name)
            if not verbose:
                lg.handlers = [h for h in lg.handlers if not _to_terminal(h)]
                lg.propagate = False
            if lg.level == logging.NOTSET:  # the libraries set their own levels (alembic: WARNING)
                lg.setLevel(logging.INFO)
            lg.addHandler(handler)
        root = logging.getLogger()
        if not verbose:
            root.handlers = [h for h in root.handlers if not _to_terminal(h)]
        root.addHandler(handler)
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("default")
            yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
        for k in env:
            os.environ.pop(k, None)
        logging.captureWarnings(False)
        handler.close()


def _to_terminal(handler: logging.Handler) -> bool:
    """Stream handlers write to the terminal (MLflow's wraps stderr in a stream object of its own)."""
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.disable_default_handler()  # "optuna" then logs through the study's file handler
