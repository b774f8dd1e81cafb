"""Everything needed to continue a trial bit-for-bit: weights, optimiser, schedule, RNG, position.

The state holds only tensors, dicts, lists, tuples, numbers, strings and None, so it loads with
``torch.load(weights_only=True)``: opening a checkpoint never runs code that came with the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "trial_config.json"
FORMAT_VERSION = 1


@dataclass
class TrialState:
    epoch: int  # global epochs completed
    stage: int  # stage of the optimiser below
    modules: dict[str, dict[str, Any]]  # name -> state_dict
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)


def capture_rng(data_gen: torch.Generator, noise_gen: torch.Generator) -> dict[str, torch.Tensor]:
    rng = {"torch": torch.get_rng_state(), "data": data_gen.get_state(), "noise": noise_gen.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    return rng


def restore_rng(rng: dict[str, torch.Tensor], data_gen: torch.Generator, noise_gen: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    data_gen.set_state(rng["data"])
    noise_gen.set_state(rng["noise"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])


def save_checkpoint(directory: Path, state: TrialState, config_json: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT_VERSION, **state.__dict__}, directory / STATE_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(config_json, indent=1, sort_keys=True))
    return directory


def load_checkpoint(directory: Path, map_location: torch.device | str = "cpu") -> TrialState:
    blob = torch.load(Path(directory) / STATE_FILE, map_location=map_location, weights_only=True)
    if blob.pop("format", None) != FORMAT_VERSION:
        raise ValueError(f"{directory} is not a semtune checkpoint of format {FORMAT_VERSION}")
    # RNG states must stay CPU ByteTensors whatever the map_location.
    blob["rng"] = {k: v.cpu() for k, v in blob["rng"].items()}
    return TrialState(**blob)


def read_checkpoint_config(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / CONFIG_FILE).read_text())
