"""Every MLflow call semtune makes, in one place.

- :mod:`.tags`: the tag names; :mod:`.runs`: parent and trial runs (used by workers too);
- :mod:`.study_run`: the driver's side (open the study, close every trial's run, totals);
- :mod:`.collect`: trial runs → the report's trials table; :mod:`.publish`: ranks, front models
  and report files back into MLflow;
- :mod:`.credentials`: the tracking credentials the workers get through the environment.
"""
