"""The two-stage procedure: stage plans per method, the epoch loop, checkpoints, the trial function."""

from trainables.training.loop import TrialDiverged
from trainables.training.trial import run_trial

__all__ = ["TrialDiverged", "run_trial"]
