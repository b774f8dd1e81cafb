"""Reading YAML documents safely, with every failure turned into a one-line, field-named problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trainables.config import ConfigError


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Parse ``path`` with ``yaml.safe_load`` into a mapping, or raise :class:`ConfigError`.

    Safe loading only: a tag that would build Python objects (``!!python/object``…) is refused.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError([("<file>", f"{p} does not exist")])
    if not p.is_file():
        raise ConfigError([("<file>", f"{p} is not a file")])
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([("<file>", f"cannot read {p}: {err.__class__.__name__}: {err}")]) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as err:
        where = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
        raise ConfigError([("<file>", f"unsupported YAML tag{where}: {_one_line(err.problem)} "
                                      "(only plain YAML is read; no object-building tags)")]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError([("<file>", f"not valid YAML{where}: {_one_line(problem)}")]) from None
    if doc is None:
        raise ConfigError([("<file>", f"{p} is empty")])
    if not isinstance(doc, dict):
        raise ConfigError([("<root>", f"expected a mapping of fields, got a YAML {type(doc).__name__}")])
    bad_keys = [k for k in doc if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError([("<root>", f"field names must be strings, got {bad_keys[0]!r}")])
    return doc


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` with the value read as a YAML scalar (``--set codec.kn=0.1``)."""
    if "=" not in text:
        raise ConfigError([("--set", f"expected key=value, got {text!r}")])
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError([(key.strip(), f"cannot read value {raw!r}")]) from None
    return key.strip(), value


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
