"""Preflight: everything a study needs, checked on the driver before any trial starts.

Each check either passes or raises :class:`ConfigError` with one line ``<field>: <reason>`` that
says what was tried and what to do, so ``semtune run`` exits with code 2 in seconds and leaves
nothing behind: no MLflow run, no Optuna trial, no Tune experiment. Checked, in order:

1. the study folder is writable, and so is the object storage when ``storage_path`` is a URI;
2. the Optuna database answers, when ``optuna_storage`` names one, and holds no other study's trials;
3. the tracking server answers (or the embedded store's folder is writable);
4. the dataset is found, or downloaded once here instead of once per trial, and holds the
   subsets asked for;
5. the classifier checkpoint is found or downloaded;
6. the Ray cluster has a node that fits one trial's resources (a study asking for GPUs on a
   CPU-only cluster would otherwise wait forever);
7. a sqlite tracking store (the embedded one included) is used on a one-node cluster only: workers on
   other nodes would write one sqlite file over a shared file system, or not find it at all;
8. stage 0 (classifier fine-tuning) runs once, as a Ray task with a trial's resources, into the
   study's classifier cache that every trial reads.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pyarrow
import pyarrow.fs

from orchestrator.spec import StudySpec, base_trial_doc, condition_grid
from orchestrator.spec.redact import connectable_uri, redact_uri
from orchestrator.study.folder import StudyFolder
from orchestrator.tune.storage import is_uri, remote_tune_storage, uri_join
from trainables.config import ConfigError, TrialConfig

TRACKING_TIMEOUT_S = 5.0


def _fail(field: str, reason: str) -> ConfigError:
    return ConfigError([(field, reason)])


def check_storage(spec: StudySpec, folder: StudyFolder) -> None:
    """The study folder can be created and written (Tune, Optuna and the log all write there), and
    so can the object storage of Tune's experiment when there is one (an endpoint, a bucket and
    credentials that work: else the first trial would fail at its first checkpoint)."""
    field = "state_path" if spec.state_path else "storage_path"
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder.path, prefix=".semtune-write-test-"):
            pass
    except OSError as err:
        raise _fail(field, f"cannot write the study folder {folder.path} "
                           f"({type(err).__name__}: {err.strerror or err}); choose a writable {field}") from None
    if is_uri(spec.storage_path):
        check_object_storage(spec.storage_path, spec.name)
        if not folder.exists():
            check_no_experiment(spec.storage_path, spec.name)


def check_no_experiment(storage_path: str, name: str) -> None:
    """A new study finds no Tune experiment of its name on the object storage: Tune would restore that
    experiment, another study's (started from another folder), into this one."""
    storage = remote_tune_storage(storage_path, name)
    if storage.glob("experiment_state-*.json"):
        raise _fail("storage_path", f"{redact_uri(storage_path)} already holds the Tune experiment of a study named "
                                    f"{name!r} ({redact_uri(storage.describe())}), started from another folder; "
                                    "choose another name, or resume that study from its folder")


def check_object_storage(storage_path: str, name: str) -> None:
    """An object written under ``<storage_path>/<name>/`` can be read back and deleted."""
    probe = uri_join(storage_path, name, f".semtune-write-test-{os.getpid()}")
    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(probe)
        with fs.open_output_stream(path) as stream:
            stream.write(b"semtune")
        with fs.open_input_stream(path) as stream:
            stream.read()
        fs.delete_file(path)
    except (OSError, ValueError, pyarrow.ArrowException) as err:
        reason = " ".join(str(err).split())[:300]
        raise _fail("storage_path", f"cannot write to {redact_uri(storage_path)} ({redact_uri(reason)}); check "
                                    "the endpoint, the bucket and the credentials in the environment "
                                    "(AWS_*, GOOGLE_*)") from None


def check_optuna_storage(spec: StudySpec, folder: StudyFolder) -> None:
    """The database ``optuna_storage`` names answers, and a new study finds no Optuna study of its name
    there: it would go on with the trials of another study of that name (started from another folder)."""
    if not spec.optuna_storage:
        return
    import optuna  # the cheap checks first

    from orchestrator.tune.search import optuna_storage

    shown = redact_uri(spec.optuna_storage)
    try:
        names = optuna.get_all_study_names(optuna_storage(spec.optuna_storage))
    except ImportError as err:
        raise _fail("optuna_storage", f"{shown} needs a database driver that is not installed ({err}); "
                                      "pip install 'psycopg[binary]' for PostgreSQL") from None
    except Exception as err:  # SQLAlchemy's and Optuna's errors: a server down, a wrong password, no database
        reason = redact_uri(" ".join(str(err).split("\n")[0].split()))[:300]
        raise _fail("optuna_storage", f"cannot open {shown} ({type(err).__name__}: {reason}); check the server, "
                                      "the database and the password (PGPASSWORD or ~/.pgpass)") from None
    taken = sorted(n for n in names if n.startswith(f"{spec.name}/"))
    if taken and not folder.exists():
        raise _fail("optuna_storage", f"{shown} already holds the Optuna studies of a study named {spec.name!r} "
                                      f"({taken[0]}, …), started from another folder; choose another name, or "
                                      "resume that study from its folder")


def check_tracking(uri: str) -> None:
    """An http(s) tracking server answers its health check within a few seconds."""
    scheme = urlparse(uri).scheme
    if scheme not in ("http", "https"):
        return  # sqlite in the study folder (checked with the storage) or a store MLflow opens itself
    try:  # the health check needs no credentials, and urllib cannot open a URL that carries them
        probe = connectable_uri(redact_uri(uri)).rstrip("/") + "/health"
        with urllib.request.urlopen(probe, timeout=TRACKING_TIMEOUT_S) as reply:
            if reply.status == 200:
                return
            problem = f"HTTP {reply.status}"
    except urllib.error.HTTPError as err:
        problem = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        problem = " ".join(str(getattr(err, "reason", err)).split())
    raise _fail("tracking_uri", f"no MLflow server answers at {redact_uri(uri)} ({problem}); start one "
                                "(mlflow server --host 127.0.0.1 --port 5000) or omit tracking_uri for the "
                                "embedded store in the study folder")


def method_configs(spec: StudySpec, folder: StudyFolder) -> dict[str, TrialConfig]:
    """One trial config per method, as the trials of the first condition will build it."""
    from orchestrator.tune.trainable import TrialContext, trial_config  # Ray Tune: only once the cheap checks ran

    context = TrialContext(base_docs={m: base_trial_doc(spec, m) for m in spec.methods}, study=None,
                           classifier_cache=str(folder.classifier_cache))
    first = condition_grid(spec)[0].as_config()
    return {m: trial_config(context, {"method": m, **first}) for m in spec.methods}


def check_dataset(cfg: TrialConfig) -> str:
    from trainables.data.availability import DatasetUnavailable, ensure_dataset

    try:
        return ensure_dataset(cfg.data, with_final=cfg.data.final_score)
    except DatasetUnavailable as err:
        raise _fail("dataset", str(err)) from None


def check_checkpoint(cfg: TrialConfig) -> None:
    from trainables.training.stage0 import resolve_checkpoint

    try:
        resolve_checkpoint(cfg.classifier)
    except Exception as err:  # FileNotFoundError, URLError, a sha256 mismatch
        c = cfg.classifier
        tried = (f"{c.arch} public checkpoint in {[*c.search_dirs, 'the model cache']} and its download"
                 if c.checkpoint == "auto" else str(c.checkpoint))
        reason = " ".join(str(err).split())[:200]
        raise _fail("trial.classifier.checkpoint", f"{tried}: {type(err).__name__}: {reason}; put the file in "
                                                   "classifier.search_dirs, give its path, or allow the download") from None


def _fits(resources, need: dict[str, float]) -> bool:
    return all(resources.get(k, 0) >= v for k, v in need.items() if v)


def _autoscaler_node_groups() -> list[dict[str, float]]:
    """Resources of the node types an autoscaler may launch (``ray up`` clusters), if it published them."""
    try:  # Ray has no public call for this; its own `ray status` reads the same record
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:
        return []
    if config is None:
        return []
    return [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]


def check_resources(spec: StudySpec) -> None:
    """Some node of the Ray cluster, alive or launchable by its autoscaler, fits one trial."""
    import ray

    need = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(_fits(res, need) for res in nodes) or any(_fits(g, need) for g in _autoscaler_node_groups()):
        return
    total = ray.cluster_resources()
    have = f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs over {len(nodes)} node(s)"
    gpu_short = spec.resources.gpu and not any(r.get("GPU", 0) >= spec.resources.gpu for r in nodes)
    raise _fail("resources.gpu" if gpu_short else "resources.cpu",
                f"each trial asks for {spec.resources.cpu:g} CPU and {spec.resources.gpu:g} GPU, but no node of "
                f"the Ray cluster has that ({have}) and no autoscaler offers one; lower resources or add such a node")


def check_tracking_reach(tracking_uri: str) -> None:
    """Several nodes log to one tracking store only through a server (sqlite is one machine's file)."""
    import ray

    if urlparse(tracking_uri).scheme not in ("sqlite", "file", ""):
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        raise _fail("tracking_uri", f"the Ray cluster has {len(nodes)} nodes, and trials on every node would write "
                                    f"the sqlite store {tracking_uri}; start an MLflow server reachable from all "
                                    "nodes (mlflow server --host 127.0.0.1 …, or the head's address) and set "
                                    "tracking_uri: http://HOST:PORT")


def prepare_stage0(spec: StudySpec, configs: dict[str, TrialConfig]) -> None:
    """Fine-tune the classifier once per distinct stage-0 config, as a Ray task with a trial's resources."""
    import ray

    from trainables.training.stage0 import prepare_stage0 as prepare

    todo = {cfg.classifier.model_dump_json() + cfg.data.model_dump_json(): cfg
            for cfg in configs.values() if cfg.classifier.finetune_epochs > 0}
    if not todo:
        return
    task = ray.remote(prepare).options(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu, max_retries=0)
    try:
        ray.get([task.remote(cfg) for cfg in todo.values()])
    except Exception as err:
        cause = getattr(err, "cause", None) or err
        reason = " ".join(str(cause).split()).splitlines()[0][:300] if str(cause) else type(cause).__name__
        raise _fail("trial.classifier", f"stage 0 (classifier fine-tuning) failed: {type(cause).__name__}: "
                                        f"{reason}") from None


def check_replay_table(spec: StudySpec) -> None:
    """A replayed study's curve table can be read and holds the study's arms (no dataset needed then)."""
    from trainables.replay import configuration_key, load_curves

    try:
        curves = load_curves(spec.replay)
    except Exception as err:  # missing file, not Parquet, columns missing
        raise _fail("replay", f"cannot read the curve table {spec.replay} ({type(err).__name__}: "
                              f"{' '.join(str(err).split())[:200]})") from None
    arms = {key[:4] for key in curves}  # (method, channel, SNR, k/n): the key's head
    for c in condition_grid(spec):
        for m in spec.methods:
            if configuration_key(m, c.channel, c.snr_db, c.kn, {})[:4] not in arms:
                raise _fail("replay", f"the curve table {spec.replay} has no {m} curves for condition {c.name}")


def preflight(spec: StudySpec, folder: StudyFolder, tracking_uri: str | None = None,
              connect=None) -> None:
    """Run every check; ``connect`` joins the Ray cluster (after the cheap checks have passed).

    A study without MLflow skips the tracking checks; a replayed one reads its curve table instead
    of the dataset and the checkpoint, and has no stage 0."""
    uri = tracking_uri or spec.tracking_uri or folder.embedded_tracking_uri
    check_storage(spec, folder)
    check_optuna_storage(spec, folder)
    if spec.mlflow:
        check_tracking(uri)
    configs = method_configs(spec, folder)
    if spec.replay:
        check_replay_table(spec)
    else:
        for cfg in configs.values():
            check_dataset(cfg)
            check_checkpoint(cfg)
    if connect is not None:
        connect(spec)
    check_resources(spec)
    if spec.mlflow:
        check_tracking_reach(uri)
    if not spec.replay:
        prepare_stage0(spec, configs)


__all__ = ["check_dataset", "check_no_experiment", "check_optuna_storage", "check_replay_table", "check_resources", "check_storage",
           "check_tracking", "check_tracking_reach", "preflight"]
