"""Random malformed study documents and random YAML text: validation ends in a StudySpec or in a
ConfigError naming every problem, and ``semtune validate`` in exit code 0 or 2, never a traceback."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from orchestrator.spec import condition_grid
from orchestrator.spec import StudySpec, build_spec
from orchestrator.spec.yamlio import load_mapping
from trainables.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]

VALID = {
    "name": "tiny",
    "methods": ["proposed"],
    "dataset": {"train_per_class": 10, "tune_per_class": 5, "image_size": [32, 32], "search_dirs": ["data"]},
    "trial": {"codec": {"width": 8}, "classifier": {"arch": "resnet20", "search_dirs": ["models"]},
              "stage1": {"lr": 0.003}, "stage2": {"lr": 0.001}, "batch_size": 16, "threads": 1},
    "conditions": {"snr_db": [20, 5], "kn": ["1/12", "1/6", 0.25]},
    "search_space": {"alpha1": {"low": 0.1, "high": 0.9, "kn_choice": True}, "alpha2": 0.5,
                     "tau": {"low": 0.1, "high": 1.0, "log": True}, "proj_dim": {"choices": [16, 32]}},
    "sampler": {"name": "random"},
    "pruner": {"name": "moasha", "grace_epochs": 1, "reduction_factor": 2},
    "budget": {"trials_per_condition": 3, "max_concurrent": 2, "stage1_epochs": 2, "stage2_epochs": 1},
    "resources": {"cpu": 1, "gpu": 0},
    "storage_path": "studies",
    "seed": 0,
}
FIELD_NAMES = sorted({"preset", "name", "low", "high", "log", "choices", "value", "kn", "snr_db", "epochs", "method",
                      "data", "seed", "stage1", "scalarization", "image_size", "gpu", "root", "checkpoint", *VALID})
NASTY = [
    0, -1, 1, 2, 1.5, 0.5, -0.0, 1e-300, 1e308, 2**31, 2**32, 2**64, -(2**63), 10**30, math.nan, math.inf, -math.inf,
    "", " ", "1/0", "1/1000", "0/5", " 1 / 12 ", "1/2.5", "nan", "inf", "kn", "auto", "..", "../../etc", "a/b",
    "~nosuchuser/x", "a\x00b", "x\ny", "\u2028", "paper", "quickstart", "grid", "median", "nsga2", "deepsc",
    True, False, None, [], {}, [32, 32], [33, 32], [0, 0], {"low": 1, "high": 0}, {"choices": []}, {"value": math.nan},
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(NASTY).map(copy.deepcopy),  # a fresh copy: the edits below mutate containers in place
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8), st.integers(-3, 3), st.none(), st.booleans())
junk = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


def _places(node, out=None) -> list:
    """Every (container, key) pair in the document, parents before children, in a stable order."""
    out = [] if out is None else out
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out.append((node, key))
        _places(child, out)
    return out


@st.composite
def malformed_docs(draw) -> dict:
    """The valid document after 1-5 random edits: delete a key, replace a value with junk, insert a
    junk key or item at any depth, or push a value one level too deep."""
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 5))):
        places = _places(doc)
        action = draw(st.sampled_from(["delete", "replace", "insert", "nest"]))
        if action == "insert":
            target = draw(st.sampled_from([doc] + [c[k] for c, k in places if isinstance(c[k], (dict, list))]))
            if target is doc:
                doc[draw(st.sampled_from(FIELD_NAMES) | st.text(min_size=1, max_size=8))] = draw(junk)
            elif isinstance(target, dict):
                target[draw(keys)] = draw(junk)
            else:
                target.insert(draw(st.integers(0, len(target))), draw(junk))
        elif places:
            container, key = draw(st.sampled_from(places))
            if action == "delete":
                del container[key]
            elif action == "replace":
                container[key] = draw(junk)
            else:
                value = container[key]
                container[key] = draw(st.sampled_from([[value], {"value": value}, {"low": value}, {"x": value}]))
    return doc


def check_outcome(doc) -> StudySpec | None:
    """The property: a StudySpec, or a ConfigError with one named, single-line problem per line."""
    try:
        spec = build_spec(doc, ROOT)
    except ConfigError as err:
        assert err.problems, "a ConfigError without problems"
        for path, reason in err.problems:
            assert isinstance(path, str) and path.strip() == path != "", err.problems
            assert isinstance(reason, str) and reason.strip(), err.problems
        lines = err.lines()
        assert len(lines) == len(err.problems)
        assert all(line.startswith("error: ") and len(line.splitlines()) == 1 for line in lines), lines
        return None
    assert isinstance(spec, StudySpec)
    assert re.fullmatch(r"[0-9a-f]{16}", spec.spec_hash())
    assert condition_grid(spec), "a valid study has at least one condition"
    assert all(0 < kn <= 1 for kn in spec.conditions.kn)
    assert build_spec(doc, ROOT).spec_hash() == spec.spec_hash()  # deterministic
    return spec


@settings(deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_docs())
def test_malformed_documents_give_a_spec_or_named_problems(doc):
    check_outcome(doc)


@settings(deadline=None, max_examples=200)
@given(st.one_of(junk, st.dictionaries(st.sampled_from(FIELD_NAMES), junk, max_size=6)))
def test_arbitrary_data_gives_a_spec_or_named_problems(doc):
    check_outcome(doc)


def test_the_mutation_strategy_reaches_both_outcomes():
    """Guard the properties' power: edits must produce valid studies as well as rejected ones."""
    outcomes = set()

    @settings(deadline=None, max_examples=150, database=None, derandomize=True)
    @given(malformed_docs())
    def collect(doc):
        outcomes.add(check_outcome(doc) is not None)

    collect()
    assert outcomes == {True, False}


# -- YAML text ----------------------------------------------------------------------------------

TOKENS = [
    "name", "budget", "conditions", "kn", "preset", "paper", "trial", "method", ":", ": ", " ", "  ", "\n", "\t",
    "- ", "[", "]", "{", "}", ",", "&a ", "*a", "*b", "<<: ", "!!python/object/apply:os.system ['echo hi']",
    "!!int ", "!!float ", "!!binary ", "!!set ", "!!omap ", "!!timestamp ", "!foo ", "2001-02-30", "1/12",
    "'", '"', "#", "---", "...", "? ", "|", ">", "%YAML 1.1\n", "~", "null", "yes", ".nan", "1e999", "0x1F", "\x00",
    "\ufeff", "é", "\u2028",
]
yaml_texts = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=40).map("".join),
    st.text(max_size=200),
    malformed_docs().map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="replace")),
)


def _write(folder: str, content: str | bytes) -> str:
    path = Path(folder) / "study.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return str(path)


@settings(deadline=None, max_examples=800)
@given(st.one_of(yaml_texts, st.binary(max_size=200)))
def test_random_yaml_gives_a_mapping_and_then_a_spec_or_named_problems(content):
    with tempfile.TemporaryDirectory() as folder:
        try:
            doc = load_mapping(_write(folder, content))
        except ConfigError as err:
            assert [p for p, _ in err.problems] in (["<file>"], ["<root>"]), err.problems
            assert all(line.startswith("error: ") and len(line.splitlines()) == 1 for line in err.lines())
            return
    assert isinstance(doc, dict) and all(isinstance(k, str) for k in doc)
    check_outcome(doc)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(yaml_texts, malformed_docs().map(lambda d: yaml.safe_dump(d, allow_unicode=True))))
def test_validate_command_exits_0_or_2_without_a_traceback(capsys, text):
    capsys.readouterr()
    with tempfile.TemporaryDirectory() as folder:
        code = main(["validate", _write(folder, text)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code == 0:
        assert err == "" and out.startswith("ok: study ")
    else:
        assert code == 2 and out == ""
        lines = err.splitlines()
        assert lines and all(re.match(r"error: [^\s:].*: .", line) for line in lines), err


@settings(deadline=None, max_examples=5, database=None)
@given(st.one_of(malformed_docs().map(lambda d: yaml.safe_dump(d, allow_unicode=True)), yaml_texts))
def test_validate_in_a_real_process_never_prints_a_traceback(text):
    with tempfile.TemporaryDirectory() as folder:
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", _write(folder, text)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr
    assert r.returncode in (0, 2), r.stderr
    if r.returncode == 2:
        assert all(line.startswith("error: ") for line in r.stderr.splitlines()) and r.stderr, r.stderr
    else:
        assert r.stdout.startswith("ok: study ")
