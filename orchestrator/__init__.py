"""Studies: ``study.yaml`` → Ray Tune trials, Optuna search, MLflow tracking, Pareto-front reports.

Composes ``trainables`` (the method and its trial function) and ``search_spaces`` (plain data).
Import-light on purpose: ``semtune validate`` must not start Ray or load torch.
"""

__version__ = "0.1.0"
