"""Ray Tune and Optuna: how a study's trials are run, sampled and stopped.

- :mod:`.experiment`: the one ``Tuner`` of a study; :mod:`.trainable`: the function each trial runs;
- :mod:`.search`: one Optuna study per condition behind a Tune searcher;
- :mod:`.schedulers`: MO-ASHA and Optuna's pruners as Tune schedulers;
- :mod:`.callbacks`: the driver's last word on each trial's MLflow run; :mod:`.progress`: the live table;
- :mod:`.storage`: where the experiment lives (a folder or object storage); :mod:`.restore`: what a resume
  rewrites in Tune's saved state first.
"""
