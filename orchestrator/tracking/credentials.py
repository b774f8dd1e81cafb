"""The tracking credentials a study's Ray workers need, handed over through the environment only.

Trials log to MLflow from Ray workers, and semtune writes no credential anywhere (a URI's are
masked, also in the pickled :class:`~orchestrator.tracking.runs.StudyRun`): workers authenticate
with the environment variables MLflow and boto3 read. Workers of a local Ray inherit the driver's
environment; on a cluster they get the variables through the job's ``runtime_env``.
"""

from __future__ import annotations

import json
import os
from urllib.parse import unquote, urlparse

CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                   "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Set by `ray job submit` in the driver's environment: the job's config, its runtime_env included.
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def worker_runtime_env(tracking_uri: str | None = None) -> dict | None:
    """``ray.init``'s ``runtime_env`` that gives the driver's credential variables to every worker.

    A ``tracking_uri`` with ``user:password@`` (the driver's own copy; workers get it masked) fills
    ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` where the environment has none, so such a study still
    logs from its workers. Variables the submitted job already passes are left out: Ray refuses to
    merge a job's ``runtime_env`` with a driver's that sets the same variable. ``None``: nothing to add.
    """
    job = json.loads(os.environ.get(JOB_CONFIG_VAR) or "{}").get("runtime_env") or {}
    given = job.get("env_vars") or {}
    env = {k: os.environ[k] for k in CREDENTIAL_VARS if k in os.environ and k not in given}
    parsed = urlparse(tracking_uri or "")
    if parsed.scheme in ("http", "https") and parsed.password and parsed.password != "***":
        for var, value in (("MLFLOW_TRACKING_USERNAME", parsed.username),
                           ("MLFLOW_TRACKING_PASSWORD", parsed.password)):
            if var not in os.environ and var not in given and value:
                env[var] = unquote(value)
    return {"env_vars": env} if env else None
