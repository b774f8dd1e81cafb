"""Running studies as a user does, in a subprocess, and reading their trial runs back from MLflow."""

from __future__ import annotations

import os
import sys

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

SEMTUNE = [sys.executable, "-m", "orchestrator.cli"]


def semtune_env(**extra: str) -> dict:
    """This environment without a tracking URI or Ray address of the machine's, Ray's token
    authentication off (the study starts its own local Ray), and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return {**env, "RAY_AUTH_MODE": "disabled", **extra}


def trial_runs(client: MlflowClient, experiment_id: str, view=ViewType.ACTIVE_ONLY) -> list:
    """Every trial run of the experiment (``semtune.kind`` = trial)."""
    return client.search_runs([experiment_id], filter_string="tags.`semtune.kind` = 'trial'",
                              run_view_type=view, max_results=1000)
