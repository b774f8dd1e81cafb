"""Shared fixtures. Tests that need the data and models in ``../shared`` skip with a reason if absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


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
