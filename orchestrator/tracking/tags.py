"""Every MLflow tag semtune reads or writes, named once (README "Reading the results in MLflow" lists them)."""

from __future__ import annotations

# -- MLflow's own ---------------------------------------------------------------------------------
TAG_PARENT = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"  # a run's or an experiment's description in the UI (Markdown)
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow 3 opens "genai_development" experiments on traces
TRAINING_EXPERIMENT = "custom_model_development"  # ... and this kind on its training runs

# -- every semtune run ----------------------------------------------------------------------------
TAG_KIND = "semtune.kind"  # "study" (the parent run) or "trial"
KIND_STUDY, KIND_TRIAL = "study", "trial"

# -- the study's parent run -----------------------------------------------------------------------
TAG_VERSION = "semtune.version"
TAG_SPEC_HASH = "semtune.spec_hash"
TAG_STUDY_FOLDER = "semtune.study_folder"
TAG_SCORES = "semtune.scores"  # which images each reported number comes from (data.split)

# -- a trial's run ------------------------------------------------------------------------------
TAG_TRIAL = "semtune.trial_id"
TAG_CONDITION = "semtune.condition"
TAG_METHOD = "semtune.method"
TAG_STATUS = "semtune.status"  # one of orchestrator.outcomes: completed | pruned | failed | running | interrupted
TAG_PRUNED_AT = "semtune.pruned_at_epoch"
TAG_REASON = "semtune.failure_reason"  # one line; the traceback is the artifact FAILURE_TRACEBACK
TAG_NODE_ID = "semtune.node_id"
TAG_TRIAL_DIR = "semtune.trial_dir"  # Tune's folder of the trial (checkpoint_*/ inside)

# -- set by `semtune report` ----------------------------------------------------------------------
TAG_RANK = "semtune.pareto_rank"
TAG_FRONT = "semtune.front_member"
TAG_MODEL = "semtune.model_logged"
TAG_MODEL_URI = "semtune.model_uri"

FAILURE_TRACEBACK = "failure_traceback.txt"  # artifact of a failed trial's run
