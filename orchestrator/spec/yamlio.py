"""Reading YAML documents safely, with every failure turned into a one-line, field-named problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trainables.config import ConfigError

MAX_BYTES = 1_000_000  # config files are a few kB; a bigger file is a mistake, not a study
MAX_DEPTH = 50  # deeper nesting is never a config, and the YAML composer recurses per level
MAX_VALUES = 100_000  # values once aliases are expanded: refuses "billion laughs" documents


class _Unreadable(yaml.MarkedYAMLError):
    """A YAML problem that is not about tags: bad values, duplicate keys, too deep nesting."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also refuses duplicate keys and over-deep nesting, and turns a
    value its constructors cannot read (``2001-02-30``, ``!!int x``) into a YAML error with a line.
    """

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Unreadable(None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as err:  # PyYAML's constructors fail on such values with any error type
            value = f" {_one_line(node.value)[:40]!r}" if isinstance(node, yaml.ScalarNode) else ""
            raise _Unreadable(None, None, f"cannot read{value} as {node.tag.rsplit(':', 1)[-1]}: "
                                          f"{_one_line(err)[:120]}", node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *base" keys may be overridden; only repeated explicit keys are errors
            key = self.construct_object(key_node)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the constructor below reports it
            if repeated:
                raise _Unreadable(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Parse ``path`` with a safe YAML loader into a mapping, or raise :class:`ConfigError`.

    Safe loading only: a tag that would build Python objects (``!!python/object``…) is refused.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError([("<file>", f"{p} does not exist")])
    if not p.is_file():
        raise ConfigError([("<file>", f"{p} is not a file")])
    try:
        if p.stat().st_size > MAX_BYTES:
            raise ConfigError([("<file>", f"{p} is larger than {MAX_BYTES:,} bytes; not a config file")])
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([("<file>", f"cannot read {p}: {err.__class__.__name__}: {err}")]) from None
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.constructor.ConstructorError as err:
        where = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
        if "constructor for the tag" not in str(err.problem):
            raise ConfigError([("<file>", f"not valid YAML{where}: {_one_line(err.problem)}")]) from None
        raise ConfigError([("<file>", f"unsupported YAML tag{where}: {_one_line(err.problem)} "
                                      "(only plain YAML is read; no object-building tags)")]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError([("<file>", f"not valid YAML{where}: {_one_line(problem)}")]) from None
    except RecursionError:
        raise ConfigError([("<file>", "not valid YAML: nested too deeply")]) from None
    if doc is None:
        raise ConfigError([("<file>", f"{p} is empty")])
    if not isinstance(doc, dict):
        raise ConfigError([("<root>", f"expected a mapping of fields, got a YAML {type(doc).__name__}")])
    bad_keys = [k for k in doc if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError([("<root>", f"field names must be strings, got {bad_keys[0]!r}")])
    if _too_many_values(doc):
        raise ConfigError([("<file>", f"more than {MAX_VALUES:,} values once YAML aliases are expanded")])
    return doc


def _too_many_values(doc: Any) -> bool:
    """Count values as validation will see them (aliases expanded), stopping at ``MAX_VALUES``."""
    stack, seen = [doc], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return True
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set)):
            stack.extend(node)
    return False


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` with the value read as a YAML scalar (``--set codec.kn=0.1``)."""
    if "=" not in text:
        raise ConfigError([("--set", f"expected key=value, got {text!r}")])
    key, raw = text.split("=", 1)
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, RecursionError):
        raise ConfigError([(key.strip(), f"cannot read value {raw!r}")]) from None
    return key.strip(), value


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
