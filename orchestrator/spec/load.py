"""Loading ``study.yaml``: preset merged in, relative paths pinned, every problem collected in one pass."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import search_spaces
from orchestrator.spec.redact import redact_uri
from orchestrator.spec.search_space import FloatRange
from orchestrator.spec.study import StudySpec, base_trial_doc
from orchestrator.tune.storage import OBJECT_STORE_SCHEMES, is_uri
from orchestrator.spec.yamlio import load_mapping
from trainables.bandwidth import KN_TOLERANCE
from trainables.config import (
    CodecConfig, ConfigError, DataConfig, build_trial_config, problems_from_validation_error, resolve_paths,
)


def _trial_problems(trial_doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate the ``trial`` section by building a TrialConfig from it, with study paths."""
    try:
        build_trial_config(trial_doc)
    except ConfigError as err:
        renamed = {"data": "dataset", "method": "methods"}
        out = []
        for path, reason in err.problems:
            head, _, rest = path.partition(".")
            out.append((renamed[head] + (f".{rest}" if rest else "") if head in renamed else f"trial.{path}", reason))
        return out
    return []


def _image_size(dataset: Any) -> tuple[int, int] | None:
    """The image size the k/n checks use; ``None`` when it is itself invalid (named at dataset.image_size)."""
    size = dataset.get("image_size", (32, 32)) if isinstance(dataset, dict) else (32, 32)
    try:
        return DataConfig(image_size=size).image_size
    except ValidationError:
        return None


def _kn_tolerance(trial: Any) -> float:
    """``trial.codec.kn_tolerance`` for the k/n checks; the default when it is absent or itself invalid."""
    codec = trial.get("codec") if isinstance(trial, dict) else None
    value = codec.get("kn_tolerance") if isinstance(codec, dict) else None
    try:
        return CodecConfig(kn_tolerance=value).kn_tolerance if value is not None else KN_TOLERANCE
    except ValidationError:
        return KN_TOLERANCE  # named at trial.codec.kn_tolerance when the trials are built


def _with_preset(doc: dict[str, Any]) -> dict[str, Any]:
    """The preset under ``doc``; a search-space parameter is replaced whole ({low, high} -> {choices})."""
    try:
        preset = search_spaces.load_preset(str(doc["preset"]))
    except KeyError as err:
        raise ConfigError([("preset", err.args[0])]) from None
    rest = {k: v for k, v in doc.items() if k != "preset"}
    merged = search_spaces.merge(preset, rest)
    if isinstance(rest.get("search_space"), dict) and isinstance(preset.get("search_space"), dict):
        merged["search_space"] = {**preset["search_space"], **rest["search_space"]}
    return merged


def _pinned_paths(doc: dict[str, Any], base_dir: Path) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Relative paths made absolute against the study file's folder, and the paths that cannot be."""
    doc, problems = dict(doc), []
    for key, inner in (("dataset", "data"), ("trial", None)):  # resolve_paths reads TrialConfig documents
        if isinstance(doc.get(key), dict):
            try:
                pinned = resolve_paths({inner: doc[key]} if inner else doc[key], base_dir)
                doc[key] = pinned[inner] if inner else pinned
            except ConfigError as err:
                problems += [(path.replace("data", key, 1) if inner else f"{key}.{path}", reason)
                             for path, reason in err.problems]
    replay = doc.get("replay")
    if isinstance(replay, str) and "://" not in replay:
        doc["replay"] = str((base_dir / Path(replay).expanduser()).resolve())
    storage = doc.setdefault("storage_path", StudySpec.model_fields["storage_path"].default)  # the default too
    if isinstance(storage, str) and storage.startswith("file://"):
        doc["storage_path"] = storage = storage.removeprefix("file://")
    if isinstance(storage, str) and is_uri(storage):
        scheme = storage.partition("://")[0].lower()
        if scheme not in OBJECT_STORE_SCHEMES:  # not turned into a local folder `foo:/…`
            problems.append(("storage_path", f"{redact_uri(storage)}: unknown scheme {scheme!r}; give a folder "
                                             f"or a URI of {', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)}"))
        # The driver's state (sqlite files a bucket cannot hold) stays in a local folder.
        doc["state_path"] = doc.get("state_path") or StudySpec.model_fields["storage_path"].default
        problems += _pin_folder(doc, "state_path", base_dir)
    elif isinstance(storage, str):
        problems += _pin_folder(doc, "storage_path", base_dir)
        if doc.get("state_path") is not None:
            problems.append(("state_path", "only with object storage (storage_path: s3://…); the study folder "
                                           "is <storage_path>/<name>"))
    optuna_storage = doc.get("optuna_storage")
    if isinstance(optuna_storage, str) and not re.match(r"^[A-Za-z][A-Za-z0-9+]*://", optuna_storage):
        problems.append(("optuna_storage", f"{redact_uri(optuna_storage)} is not a database URL (postgresql://"
                                           "user@host/db, mysql+pymysql://…, sqlite:////abs/optuna.db)"))
    return doc, problems


def _pin_folder(doc: dict[str, Any], key: str, base_dir: Path) -> list[tuple[str, str]]:
    if not isinstance(doc.get(key), str):
        return []  # the schema says what is wrong with it
    try:
        doc[key] = str((base_dir / Path(doc[key]).expanduser()).resolve())
    except (ValueError, OSError, RuntimeError) as err:  # a NUL byte, ~unknown-user
        return [(key, f"not a usable path: {err}")]
    return []


def _grid_problems(spec: StudySpec) -> list[tuple[str, str]]:
    """The grid sampler needs a finite grid: say so at ``validate``, not when the study starts."""
    if spec.sampler.name != "grid":
        return []
    return [(f"search_space.{name}", "sampler 'grid' needs {choices: [...]}, {value: x} or an integer range, "
                                     "not a continuous range")
            for name, p in spec.search_space.defined().items() if isinstance(p, FloatRange)]


def build_spec(doc: dict[str, Any], base_dir: Path) -> StudySpec:
    """Validate a study document (preset merged in, relative paths pinned to ``base_dir``).

    Collects every problem it can find in one pass: paths, the sections' own checks, then the
    ``trial`` section built into a real TrialConfig for each method.
    """
    if not isinstance(doc, dict):
        raise ConfigError([("<root>", f"expected a mapping of fields, got {type(doc).__name__}")])
    doc, problems = _pinned_paths(_with_preset(doc) if "preset" in doc else doc, base_dir)
    spec = None
    try:
        spec = StudySpec.model_validate(doc, context={"image_size": _image_size(doc.get("dataset")),
                                                      "kn_tolerance": _kn_tolerance(doc.get("trial"))})
        problems += _grid_problems(spec)
    except ValidationError as err:
        problems += problems_from_validation_error(err)
    trial = doc.get("trial", {})
    if isinstance(trial, dict) and not any(p[0].startswith("trial") for p in problems):
        methods = spec.methods if spec else ["proposed"]
        for method in methods:
            base = base_trial_doc(spec, method) if spec else search_spaces.merge(
                trial, {"stage1": {"epochs": 1, "lr": 0.01}, "stage2": {"epochs": 1, "lr": 1e-4}})
            problems += [p for p in _trial_problems(base) if p not in problems]
    if problems:
        raise ConfigError(problems)
    return spec


def load_spec(path: str | Path) -> StudySpec:
    p = Path(path)
    return build_spec(load_mapping(p), p.resolve().parent)

