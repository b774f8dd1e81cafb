"""The outside peer of the replay benchmark: Syne Tune's MOASHA on the recorded learning-curve table.

semtune's own searches are replayed on ``bench/data/curves.parquet`` (every configuration trained to
its full budget, each epoch kept). To compare them with an implementation we did not write, this
module hands the same table to Syne Tune (0.16) and lets Syne Tune do everything else: MOASHA samples
configurations at random and stops trials at its rungs, and Syne Tune's own simulator
(``UserBlackboxBackend`` over a ``BlackboxTabular`` + ``SimulatorCallback``) plays the trials back,
advancing a simulated clock by the table's per-epoch ``seconds`` instead of sleeping. Same ground
truth, someone else's scheduler and simulator.

Read its numbers knowing that Syne Tune 0.16's MOASHA ranks rungs oddly: ``NonDominatedPriority``
returns the recorded results' indices in sorted order, which ``asha.Bracket.on_result`` takes for
per-result scores, so a result continues when the one sorted *last* at that rung arrived in the
first 1/reduction_factor of arrivals, nearly regardless of its own value (with reduction_factor 3, a
result that dominates all others at its rung continues only ~40 % of the time). That is the
scheduler as shipped, and it is what runs here.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from orchestrator.objectives import METRICS as OBJECTIVES  # accuracy and PSNR, both maximised
from trainables.replay import PARAMS  # the searched hyperparameters a table row may carry

FIDELITY = "epoch"
ELAPSED = "elapsed_seconds"  # seconds since the trial started, at the end of each epoch


def arm_blackbox(table_path: str, arm: str):
    """One arm's configurations as a Syne Tune ``BlackboxTabular``: the parameters that vary in the arm
    (categorical, the table's distinct values) → per epoch accuracy, psnr and cumulative seconds."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import choice, randint

    table = pq.read_table(table_path)
    table = table.filter(pc.equal(table["arm"], arm))
    if table.num_rows == 0:
        raise ValueError(f"arm {arm!r} is not in {table_path}")
    df = table.to_pandas().sort_values(["config_id", "epoch"])
    epochs = int(df["epochs_total"].iloc[0])
    varying = [p for p in PARAMS if p in df and df[p].nunique() > 1]
    if not varying:
        raise ValueError(f"arm {arm!r} has a single configuration: nothing to search")
    configs = df.groupby("config_id", sort=True)
    hps = configs[varying].first().reset_index(drop=True)
    choices = {p: sorted(hps[p].unique().tolist()) for p in varying}
    if len(hps.drop_duplicates()) != len(hps) or len(hps) != int(np.prod([len(c) for c in choices.values()])):
        raise ValueError(f"arm {arm!r}: the configurations are not the full grid of {choices}, so a "
                         "sampled configuration would not map to exactly one row group")
    n = len(hps)
    if len(df) != n * epochs or not (df["epoch"].to_numpy().reshape(n, epochs) == np.arange(1, epochs + 1)).all():
        raise ValueError(f"arm {arm!r}: every configuration needs exactly the epochs 1..{epochs}")
    # The arm rides along as a constant: BlackboxTabular looks a configuration up with ``.loc[tuple]``,
    # which pandas 3 rejects on a one-level index (arms that search a single parameter).
    hps["arm"] = arm
    values = df[list(OBJECTIVES)].to_numpy(float).reshape(n, epochs, len(OBJECTIVES))
    elapsed = df["seconds"].to_numpy(float).reshape(n, epochs).cumsum(axis=1)
    evaluations = np.concatenate([values, elapsed[..., None]], axis=2)[:, None]  # (configs, seeds=1, epochs, 3)
    return BlackboxTabular(
        hyperparameters=hps,
        configuration_space={**{p: choice(c) for p, c in choices.items()}, "arm": arm},
        fidelity_space={FIDELITY: randint(1, epochs)},
        objectives_evaluations=evaluations,
        fidelity_values=np.arange(1, epochs + 1),
        objectives_names=[*OBJECTIVES, ELAPSED],
    )


def run_moasha(table_path: str, arm: str, *, seed: int, max_trials: int | None = None,
               max_epochs: int | None = None, grace_epochs: int = 1, reduction_factor: float = 3,
               n_workers: int = 2) -> dict:
    """Syne Tune MOASHA (random sampling, as Syne Tune ships it) on one arm's configurations of the table.

    Stops when ``max_trials`` trials were started (those then finish as MOASHA decides) or when the
    epochs consumed reach ``max_epochs`` (the running trials are stopped), whichever first.
    Returns ``{"epochs": total epochs consumed (each reported epoch of each trial counts once),
    "trials": number of trials started, "completed": [[accuracy, psnr], ...] of the trials that ran
    to epochs_total, "seconds": wall seconds of this call}``.
    """
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    if max_trials is None and max_epochs is None:
        raise ValueError("give max_trials or max_epochs (or both)")
    started = time.perf_counter()
    blackbox = arm_blackbox(table_path, arm)
    epochs_total = int(blackbox.fidelity_values[-1])

    proposed = itertools.count()

    class CappedMOASHA(MOASHA):
        """MOASHA that proposes at most ``max_trials`` configurations; Syne Tune's tuner then treats
        the search space as exhausted and lets the running trials finish."""

        def suggest(self):
            if max_trials is not None and next(proposed) >= max_trials:
                return None
            return super().suggest()

    scheduler = CappedMOASHA(blackbox.configuration_space, metrics=list(OBJECTIVES), do_minimize=False,
                             time_attr=FIDELITY, max_t=epochs_total, grace_period=grace_epochs,
                             reduction_factor=reduction_factor, random_seed=seed)
    # The tuner polls the simulated workers every tuner_sleep_time simulated seconds; polling faster
    # than the shortest epoch means MOASHA sees every epoch's result before the next one is trained.
    epoch_seconds = np.diff(blackbox.objectives_evaluations[:, 0, :, -1], axis=1, prepend=0.0)
    poll = max(0.5 * float(epoch_seconds.min()), 0.01)
    backend = UserBlackboxBackend(blackbox, elapsed_time_attr=ELAPSED, seed=0,  # the table's one recorded seed
                                  tuner_sleep_time=poll)
    callback = SimulatorCallback()
    # Syne Tune stops once *more than* max_num_evaluations results were reported
    stop = StoppingCriterion(max_num_evaluations=None if max_epochs is None else max_epochs - 1)
    rng_state = np.random.get_state()
    np.random.seed(seed)  # MOASHA samples and picks brackets from numpy's global generator
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            tuner = Tuner(backend, scheduler, stop, n_workers=n_workers, sleep_time=0, callbacks=[callback],
                          tuner_name="syne-peer", suffix_tuner_name=False, save_tuner=False,
                          trial_backend_path=tmp)
            tuner.tuner_path = Path(tmp)  # results.csv and metadata go to a scratch folder, not ~/syne-tune
            tuner.run()
    finally:
        np.random.set_state(rng_state)
    results = callback.results  # every result the tuner passed to MOASHA, in order
    finals = [[float(r[m]) for m in OBJECTIVES] for r in results if r[FIDELITY] == epochs_total]
    return {"epochs": len(results), "trials": tuner.tuning_status.num_trials_started,
            "completed": finals, "seconds": time.perf_counter() - started}
