"""Waiting out a tracking-server outage: a trial (or the driver) retries an MLflow call until the
server is back, for up to :data:`PATIENCE_S`, instead of failing.

MLflow's client retries a request itself (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7 with exponential
back-off by default: about 4 minutes) and then raises, which failed the trial at its next epoch.
semtune retries on top of that, only errors that say the server was unreachable or failed
(``INTERNAL_ERROR``, ``TEMPORARILY_UNAVAILABLE``, a socket error), never a refused request. The
trial waits: its epoch's metrics are in MLflow before Tune hears of the epoch, so a trial that a
scheduler stops at that epoch (its process ends without a word) has lost nothing. MLflow has no
option for this; it is small enough to keep here.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)
T = TypeVar("T")

PATIENCE_S = 900.0  # beyond MLflow's own retries: how long a call waits for the server to come back
PAUSE_S = 3.0
_OUTAGE_CODES = ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")


def is_outage(err: BaseException) -> bool:
    """An error that says the tracking server was away or broken, not that the request was wrong."""
    return isinstance(err, OSError) or (isinstance(err, MlflowException) and err.error_code in _OUTAGE_CODES)


def patiently(call: Callable[..., T], *args, patience_s: float = PATIENCE_S, **kwargs) -> T:
    """``call(*args, **kwargs)``, retried through an outage of up to ``patience_s`` seconds."""
    deadline, away_since = time.monotonic() + patience_s, None
    while True:
        try:
            result = call(*args, **kwargs)
        except (MlflowException, OSError) as err:
            if not is_outage(err) or time.monotonic() >= deadline:
                raise
            if away_since is None:
                away_since = time.monotonic()
                log.warning("MLflow unreachable (%s); retrying for up to %.0f s", str(err)[:200], patience_s)
            time.sleep(PAUSE_S)
            continue
        if away_since is not None:
            log.warning("MLflow reachable again after %.0f s", time.monotonic() - away_since)
        return result
