"""Shared fixtures.

Tests that train or run studies use a small synthetic CIFAR-like dataset that the session writes
itself (``synthetic_cifar_dir``, see ``synthetic_data.py``) and a classifier trained from scratch
or randomly initialised, so they run on any clone. The few tests about the real CIFAR-10 copy,
the public checkpoints or Kodak use ``cifar_dir`` / ``models_dir`` / ``kodak_dir``, which read
``../shared`` (or ``$SEMTUNE_TEST_SHARED``) and skip with a reason if it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servers import MlflowServer, PostgresServer, S3Server
from synthetic_data import write_synthetic_cifar  # tests/ is on the pytest pythonpath (pyproject.toml)

ROOT = Path(__file__).resolve().parents[1]
# SEMTUNE_TEST_SHARED=/nonexistent simulates a clone without ../shared.
SHARED = Path(os.environ.get("SEMTUNE_TEST_SHARED") or ROOT.parent / "shared")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data/models folder beside the project)")
    return path


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """``../shared/data/cifar10``: train.parquet, test.parquet, test.npz (the JPEG copy)."""
    return _require(SHARED / "data" / "cifar10")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """``../shared/models``: the public akamaster ResNet-56 and ResNet-20 checkpoints."""
    return _require(SHARED / "models")


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    """``../shared/data/kodak``: the 24 Kodak PNGs."""
    return _require(SHARED / "data" / "kodak")


@pytest.fixture(scope="session")
def synthetic_cifar_dir(tmp_path_factory) -> Path:
    """A synthetic CIFAR-10 look-alike made here: ``{train,test}.{npz,parquet}``, 200 / 50 images per class.

    10 classes of 32×32 RGB with class-dependent colour and stripes (learnable from scratch);
    rows interleaved by class. ``data.source: auto`` reads the npz files; ``source: parquet`` the others.
    """
    return write_synthetic_cifar(tmp_path_factory.mktemp("synthetic-cifar10"), train_per_class=200,
                                 test_per_class=50, seed=0)


@pytest.fixture(scope="session")
def random_resnet20_checkpoint(tmp_path_factory) -> Path:
    """A seeded, randomly initialised ResNet-20 saved in the public (akamaster) checkpoint format.

    For tests that need *a* checkpoint file (strict loading, frozen weights) but not the public one.
    """
    import torch

    from trainables.classifier import DownstreamModel

    with torch.random.fork_rng(devices=[]):  # leaves the global RNG as it was
        torch.manual_seed(20)
        state = {f"module.{k}": v for k, v in DownstreamModel("resnet20").net.state_dict().items()}
    path = tmp_path_factory.mktemp("random-resnet20") / "resnet20-random.th"
    torch.save({"state_dict": state}, path)
    return path


# The stage-0 classifier of the tiny studies: ResNet-20 trained from scratch on the synthetic
# training split, once per study folder (stage 0 caches it in the study's classifier cache).
SCRATCH_CLASSIFIER = {"arch": "resnet20", "checkpoint": None, "finetune_epochs": 2}


def tiny_study_doc(data_dir: Path, storage: Path, name: str = "tiny", **over) -> dict:
    """A real but tiny study on ``data_dir``: 2 conditions × 3 trials of 10 images per class, seconds per trial."""
    from search_spaces import merge

    doc = {
        "name": name,
        "dataset": {"search_dirs": [str(data_dir)], "train_per_class": 10, "tune_per_class": 5},
        "trial": {
            "codec": {"width": 8},
            "classifier": dict(SCRATCH_CLASSIFIER),
            "stage1": {"lr": 0.003}, "stage2": {"lr": 0.001}, "batch_size": 16, "threads": 1,
        },
        "conditions": {"snr_db": [20], "kn": ["1/12", "1/6"]},
        "search_space": {"alpha1": {"low": 0.1, "high": 0.9}, "tau": {"low": 0.1, "high": 1.0, "log": True}},
        "sampler": {"name": "random"},
        "pruner": {"name": "moasha", "grace_epochs": 1, "reduction_factor": 2},
        "budget": {"trials_per_condition": 3, "max_concurrent": 2, "stage1_epochs": 2, "stage2_epochs": 1},
        "storage_path": str(storage),
    }
    replaced = {k: over.pop(k) for k in ("search_space", "conditions") if k in over}  # whole sections
    return {**merge(doc, over), **replaced}


@pytest.fixture(scope="session")
def study_doc(synthetic_cifar_dir):
    """``study_doc(storage, name, **overrides) -> dict``: :func:`tiny_study_doc` on the synthetic data."""

    def doc(storage: Path, name: str = "tiny", **over) -> dict:
        return tiny_study_doc(synthetic_cifar_dir, storage, name, **over)

    return doc


@pytest.fixture
def write_study(tmp_path, study_doc):
    """``write_study(**overrides) -> Path`` of a tiny study YAML in ``tmp_path``."""
    import yaml

    def write(name: str = "tiny", **over) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(study_doc(tmp_path / "studies", name, **over)))
        return path

    return write


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 (sqlite backend, local artifacts); yields its http URL."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server on 127.0.0.1 (moto in server mode) with one empty bucket."""
    server = S3Server(tmp_path_factory.mktemp("s3-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL on 127.0.0.1 with password authentication (``.url``, ``.env``: PGPASSWORD)."""
    server = PostgresServer().start()
    yield server
    server.stop()
