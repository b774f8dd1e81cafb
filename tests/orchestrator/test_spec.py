"""``study.yaml`` validation: every problem is named by its field, all in one pass, and
``semtune validate`` reports them as ``error:`` lines with exit code 2, never a traceback."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.tune.search import build_sampler
from orchestrator.spec import Choices, FloatRange, Fixed, IntRange, build_spec, load_spec
from orchestrator.spec.yamlio import parse_override
from search_spaces import load_preset
from study_docs import DELETE, tiny_doc, with_changes  # tests/ is on the pytest pythonpath
from trainables.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SEMTUNE = [sys.executable, "-m", "orchestrator.cli"]


def problems(doc, base: Path = ROOT) -> dict[str, str]:
    """``{field path: reason}`` of the ConfigError that ``build_spec`` must raise."""
    with pytest.raises(ConfigError) as info:
        build_spec(doc, base)
    found = dict(info.value.problems)
    assert len(found) == len(info.value.problems), f"a field reported twice: {info.value.problems}"
    return found


def problems_of_file(path: Path) -> dict[str, str]:
    """``{field path: reason}`` of the ConfigError that ``load_spec`` must raise."""
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    return dict(info.value.problems)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- unit tests of build_spec / load_spec ------------------------------------------------------


def test_tiny_doc_is_valid_and_reads_fractions(tmp_path):
    spec = build_spec(tiny_doc(), tmp_path)
    assert spec.name == "tiny" and spec.methods == ["proposed"]
    assert spec.conditions.kn == [pytest.approx(1 / 12), pytest.approx(1 / 6)]
    assert isinstance(spec.search_space.alpha1, FloatRange) and spec.search_space.tau.log is True


@pytest.mark.parametrize("changes, path, reason", [
    # search space: alpha1, alpha2 in [0, 1]; tau > 0; ranges ordered; choices non-empty
    ({"search_space.alpha1": {"low": 0.1, "high": 1.5}}, "search_space.alpha1", "must be in [0, 1] (got 1.5)"),
    ({"search_space.alpha2": {"low": -0.1, "high": 0.5}}, "search_space.alpha2", "must be in [0, 1] (got -0.1)"),
    ({"search_space.alpha2": {"choices": [0.5, 2]}}, "search_space.alpha2", "must be in [0, 1] (got 2)"),
    ({"search_space.alpha1": 1.01}, "search_space.alpha1", "must be in [0, 1] (got 1.01)"),
    ({"search_space.tau": {"low": 0, "high": 1}}, "search_space.tau", "must be > 0 (got 0.0)"),
    ({"search_space.tau": -1}, "search_space.tau", "must be > 0 (got -1)"),
    ({"search_space.tau": {"low": 1, "high": 0.5}}, "search_space.tau", "low (1.0) must not exceed high (0.5)"),
    ({"search_space.tau": {"value": float("nan")}}, "search_space.tau.value", "finite number"),
    ({"search_space.alpha1": {"choices": []}}, "search_space.alpha1.choices", "at least 1 item"),
    ({"search_space.alpha1": {"choices": [0.5, 0.5]}}, "search_space.alpha1.choices", "distinct"),
    ({"search_space.alpha1": [0.1, 0.2]}, "search_space.alpha1", "expected {low, high[, log]}"),
    ({"search_space.proj_dim": {"choices": [16, 32.5]}}, "search_space.proj_dim", "choices must be integers"),
    ({"search_space.beta": 0.5}, "search_space.beta", "unknown field"),
    # channel conditions: k/n in (0, 1] and reachable for the image size
    ({"conditions.kn": [0]}, "conditions.kn.0", "k/n must be in (0, 1] (got 0)"),
    ({"conditions.kn": ["1/12", 1.5]}, "conditions.kn.1", "k/n must be in (0, 1] (got 1.5)"),
    ({"conditions.kn": ["1/1000"]}, "conditions.kn.0", "unreachable for 32x32 images"),
    ({"conditions.kn": ["1/0"]}, "conditions.kn.0", "division by zero"),
    ({"conditions.kn": ["one/12"]}, "conditions.kn.0", "valid number"),
    ({"conditions.kn": []}, "conditions.kn", "at least 1 item"),
    ({"conditions.snr_db": [20, 20]}, "conditions.snr_db", "distinct"),
    ({"conditions.snr_db": [float("nan")]}, "conditions.snr_db.0", "finite number"),
    ({"conditions": None}, "conditions", "valid dictionary"),
    ({"conditions": DELETE}, "conditions", "Field required"),
    # sampler and pruner
    ({"sampler.name": "cmaes"}, "sampler.name", "'nsga2', 'tpe', 'gp', 'random' or 'grid'"),
    ({"sampler.population_size": 1}, "sampler.population_size", "greater than or equal to 2"),
    ({"sampler.name": "grid", "search_space.tau": {"choices": [0.1, 0.5]}}, "search_space.alpha1",
     "sampler 'grid' needs {choices: [...]}"),
    ({"pruner.name": "asha"}, "pruner.name", "'moasha', 'successive_halving', 'hyperband', 'median', 'wilcoxon'"),
    ({"pruner.name": "median"}, "pruner", "pruner 'median' needs a scalarization"),
    ({"pruner": {"name": "hyperband", "scalarization": {"loss": 1}}}, "pruner", "unknown metrics ['loss']"),
    ({"pruner": {"name": "median", "scalarization": {"accuracy": 1}, "reduction_factor": 2.5}}, "pruner",
     "integer reduction_factor"),
    ({"pruner.reduction_factor": float("inf")}, "pruner.reduction_factor", "finite number"),
    ({"pruner.grace_epochs": 0}, "pruner.grace_epochs", "greater than or equal to 1"),
    ({"pruner.grace_epochs": 99}, "pruner.grace_epochs", "99 is past the last epoch of a trial"),
    # budget and resources
    ({"budget.trials_per_condition": 0}, "budget.trials_per_condition", "greater than or equal to 1 (got 0)"),
    ({"budget.max_concurrent": 0}, "budget.max_concurrent", "greater than or equal to 1 (got 0)"),
    ({"budget.stage1_epochs": 0}, "budget.stage1_epochs", "greater than or equal to 1 (got 0)"),
    ({"budget.stage2_epochs": -1}, "budget.stage2_epochs", "greater than or equal to 0 (got -1)"),
    ({"budget.trials_per_condition": 2.5}, "budget.trials_per_condition", "fractional part"),
    ({"budget.trials_per_condition": DELETE}, "budget.trials_per_condition", "Field required"),
    ({"budget": None}, "budget", "valid dictionary"),
    ({"resources": {"gpu": 1.5}}, "resources.gpu", "more than one GPU must be a whole number (got 1.5)"),
    ({"resources": {"gpu": float("inf")}}, "resources.gpu", "finite number"),
    ({"resources": {"gpu": -0.5}}, "resources.gpu", "greater than or equal to 0"),
    ({"resources": {"cpu": 0}}, "resources.cpu", "greater than 0"),
    # the study as a whole
    ({"bogus": 1}, "bogus", "unknown field"),
    ({"sampler.bogus": 1}, "sampler.bogus", "unknown field"),
    ({"methods": []}, "methods", "at least 1 item"),
    ({"methods": ["foo"]}, "methods.0", "'proposed', 'deepjscc', 'deepjscc_ft' or 'deepsc' (got 'foo')"),
    ({"methods": ["proposed", "proposed"]}, "methods", "distinct"),
    ({"seed": "x"}, "seed", "valid integer"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    ({"seed": 2**32}, "seed", "less than 4294967296"),
    ({"name": "../../etc"}, "name", "should match pattern"),
    ({"name": "a/b"}, "name", "should match pattern"),
    ({"name": 5}, "name", "valid string"),
    ({"report": {"reference_accuracy": 2}}, "report.reference_accuracy", "less than or equal to 1"),
    ({"storage_path": "a\x00b"}, "storage_path", "not a usable path"),
    ({"storage_path": "ftp://host/studies"}, "storage_path", "unknown scheme 'ftp'; give a folder or a URI of s3://"),
    ({"storage_path": "sftp://AKIAKEY:s3cret@host/x"}, "storage_path", "sftp://AKIAKEY:***@host/x: unknown scheme"),
    ({"state_path": "elsewhere"}, "state_path", "only with object storage"),
    ({"optuna_storage": "optuna.db"}, "optuna_storage", "not a database URL"),
    ({"optuna_storage": "pg:x:s3cret@db/x"}, "optuna_storage", "pg:x:s3cret@db/x is not a database URL"),
    ({"storage_path": "s3://bucket/x", "state_path": "a\x00b"}, "state_path", "not a usable path"),
    # dataset: image size whole for the encoders' 4x downsampling
    ({"dataset.image_size": [33, 32]}, "dataset.image_size", "multiples of 4"),
    ({"dataset.image_size": [0, 0]}, "dataset.image_size", "multiples of 4"),
    ({"dataset.image_size": "x"}, "dataset.image_size", "valid tuple"),
    ({"dataset.image_size": None}, "dataset.image_size", "valid tuple"),
    ({"dataset.name": "mnist"}, "dataset.name", "'cifar10'"),
    ({"dataset.root": "a\x00b"}, "dataset.root", "not a usable path"),
    ({"dataset": [1]}, "dataset", "valid dictionary"),
    # trial: TrialConfig fields shared by all trials, minus what the study owns
    ({"trial": [1, 2]}, "trial", "valid dictionary"),
    ({"trial.method": "deepsc"}, "trial.method", "set by the study's 'methods' section"),
    ({"trial.data": {}}, "trial.data", "set by the study's 'dataset' section"),
    ({"trial.seed": 1}, "trial.seed", "set by the study's 'seed' section"),
    ({"trial.stage1.epochs": 3}, "trial.stage1.epochs", "set by budget.stage1_epochs"),
    ({"trial.stage2.epochs": 3}, "trial.stage2.epochs", "set by budget.stage2_epochs"),
    ({"trial.stage1": [1]}, "trial.stage1", "expected a mapping"),
    ({"trial.bogus": 1}, "trial.bogus", "unknown field"),
    ({"trial.loss.tau": -1}, "trial.loss.tau", "greater than 0"),
    ({"trial.classifier.arch": "vgg"}, "trial.classifier.arch", "'resnet56' or 'resnet20'"),
    ({"trial.batch_size": 1}, "trial.batch_size", "greater than or equal to 2"),
    ({"trial.classifier.search_dirs": [1]}, "trial.classifier.search_dirs.0", "valid string"),
    # presets
    ({"preset": "bogus"}, "preset", "unknown preset 'bogus'; known presets: paper, quickstart"),
])
def test_each_problem_is_named_by_its_field(changes, path, reason):
    found = problems(with_changes(tiny_doc(), changes))
    assert list(found) == [path], found
    assert reason in found[path]


def test_an_invalid_image_size_is_reported_once_not_per_kn():
    doc = with_changes(tiny_doc(), {"dataset.image_size": [33, 32], "conditions.kn": ["1/12", "1/6", "1/3"]})
    found = problems(doc)
    assert list(found) == ["dataset.image_size"]


def test_kn_reachability_depends_on_the_image_size(tmp_path):
    doc = with_changes(tiny_doc(), {"conditions.kn": ["1/96"]})  # C = 96·k/n = 1 latent channel
    assert build_spec(doc, tmp_path).conditions.kn == [pytest.approx(1 / 96)]
    found = problems(with_changes(doc, {"dataset.image_size": [4, 4]}))  # a 1x1 latent needs an even C
    assert "unreachable for 4x4 images" in found["conditions.kn.0"]


def test_every_problem_of_a_document_is_reported_in_one_pass():
    doc = with_changes(tiny_doc(), {
        "search_space.alpha1": {"low": 0.1, "high": 1.5},
        "search_space.tau": {"low": 1, "high": 0.5},
        "conditions.kn": ["1/12", "1/1000"],
        "sampler.name": "cmaes",
        "pruner.name": "median",
        "budget.trials_per_condition": 0,
        "resources": {"gpu": 1.5},
        "trial.method": "deepsc",
        "bogus": True,
    })
    assert set(problems(doc)) == {
        "search_space.alpha1", "search_space.tau", "conditions.kn.1", "sampler.name", "pruner",
        "budget.trials_per_condition", "resources.gpu", "trial.method", "bogus",
    }


def test_trial_problems_come_with_the_other_sections_problems():
    doc = with_changes(tiny_doc(), {"trial.loss.tau": -1, "trial.codec.arch": "x", "budget.stage1_epochs": 0})
    assert set(problems(doc)) == {"trial.loss.tau", "trial.codec.arch", "budget.stage1_epochs"}


def test_valid_edge_values_are_accepted(tmp_path):
    doc = with_changes(tiny_doc(), {
        "search_space": {"alpha1": {"choices": [0, 1, "kn"]}, "alpha2": 0, "tau": {"value": 1e-6},
                         "proj_dim": {"low": 8, "high": 64, "step": 8}},
        "sampler": {"name": "grid"},  # every parameter finite: a grid
        "pruner": {"name": "hyperband", "scalarization": {"accuracy": 1.0, "psnr": 0.02}, "reduction_factor": 3},
        "resources": {"cpu": 0.5, "gpu": 2},
        "methods": ["proposed", "deepjscc"],
        "conditions.kn": [1, "1/2.5"],
        "budget": {"trials_per_condition": 1, "max_concurrent": 1, "stage1_epochs": 1, "stage2_epochs": 0},
        "seed": 2**32 - 1,
    })
    spec = build_spec(doc, tmp_path)
    assert isinstance(spec.search_space.alpha1, Choices) and isinstance(spec.search_space.alpha2, Fixed)
    assert isinstance(spec.search_space.proj_dim, IntRange) and spec.resources.gpu == 2
    assert spec.conditions.kn == [1.0, pytest.approx(0.4)]
    for method in spec.methods:  # each arm's grid really builds
        build_sampler(spec.sampler, spec.seed, spec.search_space, method)
    assert build_spec(with_changes(doc, {"resources.gpu": 0.25}), tmp_path).resources.gpu == 0.25


@pytest.mark.parametrize("text, expected", [
    ("1/12", 1 / 12), (" 1 / 6 ", 1 / 6), ("1/2.5", 0.4), ("3/12", 0.25), (0.25, 0.25), (1, 1.0),
])
def test_kn_strings_are_read_as_fractions(tmp_path, text, expected):
    spec = build_spec(with_changes(tiny_doc(), {"conditions.kn": [text]}), tmp_path)
    assert spec.conditions.kn == [pytest.approx(expected, rel=1e-12)]


@pytest.mark.parametrize("preset, n_conditions", [("paper", 10), ("quickstart", 2)])
def test_presets_validate(tmp_path, preset, n_conditions):
    spec = build_spec({"preset": preset}, tmp_path)
    assert spec.name == preset
    assert len(spec.conditions.snr_db) * len(spec.conditions.kn) == n_conditions
    assert spec.storage_path == str(tmp_path / "semtune-studies")


def test_object_storage_keeps_its_uri_and_puts_the_study_folder_under_state_path(tmp_path):
    from orchestrator.study.folder import StudyFolder
    from orchestrator.tune.storage import uri_join

    uri = "s3://bucket/studies?endpoint_override=127.0.0.1:9000&scheme=http"
    spec = build_spec({**tiny_doc(), "storage_path": uri}, tmp_path)
    assert (spec.storage_path, spec.state_path) == (uri, str(tmp_path / "semtune-studies"))
    assert StudyFolder.for_spec(spec).path == tmp_path / "semtune-studies" / spec.name
    moved = build_spec({**tiny_doc(), "storage_path": "gs://other/x", "state_path": "/srv/state"}, tmp_path)
    assert StudyFolder.for_spec(moved).path == Path("/srv/state") / spec.name
    assert moved.spec_hash() == spec.spec_hash() == build_spec(tiny_doc(), tmp_path).spec_hash()  # where, not what
    assert uri_join(uri, spec.name, "tune") == f"s3://bucket/studies/{spec.name}/tune?endpoint_override=127.0.0.1:9000&scheme=http"
    assert build_spec({**tiny_doc(), "storage_path": "file:///srv/x"}, tmp_path).storage_path == "/srv/x"


def test_the_projects_study_yaml_validates_with_paths_pinned_to_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory does not matter, the file's folder does
    spec = load_spec(ROOT / "study.yaml")
    assert spec.name == "quickstart"
    assert load_preset("quickstart")["budget"].items() <= spec.budget.model_dump().items()
    assert spec.dataset.search_dirs == (str((ROOT.parent / "shared" / "data" / "cifar10").resolve()),)
    assert spec.trial["classifier"]["search_dirs"] == [str((ROOT.parent / "shared" / "models").resolve())]
    assert spec.storage_path == str(ROOT / "semtune-studies")


def test_a_preset_is_merged_under_the_file_and_overridden_field_by_field(tmp_path):
    preset = load_preset("quickstart")  # its values are read, not repeated here: the preset evolves
    spec = build_spec({
        "preset": "quickstart", "name": "mine",
        "budget": {"trials_per_condition": 7},
        "trial": {"batch_size": 16},
        "conditions": {"kn": ["1/6"]},
        "search_space": {"proj_dim": {"low": 8, "high": 32}, "tau": 0.3},
    }, tmp_path)
    assert spec.name == "mine"
    assert spec.budget.trials_per_condition == 7
    assert (spec.budget.stage1_epochs, spec.budget.stage2_epochs) == (
        preset["budget"]["stage1_epochs"], preset["budget"]["stage2_epochs"])  # kept beside the override
    assert spec.trial["batch_size"] == 16 and spec.trial["codec"] == preset["trial"]["codec"]
    assert spec.conditions.snr_db == preset["conditions"]["snr_db"] and spec.conditions.kn == [pytest.approx(1 / 6)]
    # a parameter is replaced whole: {choices} can become a range, a range a fixed value
    assert "choices" in preset["search_space"]["proj_dim"] and "low" in preset["search_space"]["tau"]
    assert spec.search_space.proj_dim == IntRange(low=8, high=32)
    assert spec.search_space.tau == Fixed(value=0.3)
    assert preset["search_space"]["alpha1"].items() <= spec.search_space.alpha1.model_dump().items()  # kept


def test_problems_after_a_preset_merge_name_the_merged_field():
    found = problems({"preset": "paper", "budget": {"stage1_epochs": 0}, "search_space": {"alpha2": {"choices": [2]}}})
    assert set(found) == {"budget.stage1_epochs", "search_space.alpha2"}


def test_relative_paths_are_pinned_to_the_study_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "studies" / "a"
    folder.mkdir(parents=True)
    doc = with_changes(tiny_doc(), {
        "dataset.search_dirs": ["data", "/abs/data"], "dataset.root": "~/cache",
        "trial.classifier": {"arch": "resnet20", "checkpoint": "../models/r20.th", "search_dirs": ["models"]},
        "storage_path": "../out",
    })
    path = write(folder / "study.yaml", yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path)
    spec = load_spec(path.relative_to(tmp_path))
    assert spec.dataset.search_dirs == (str(folder / "data"), "/abs/data")
    assert spec.dataset.root == "~/cache"  # home-relative paths are left for each node to expand
    assert spec.trial["classifier"]["checkpoint"] == str(tmp_path / "studies" / "models" / "r20.th")
    assert spec.trial["classifier"]["search_dirs"] == [str(folder / "models")]
    assert spec.storage_path == str(tmp_path / "studies" / "out")
    assert build_spec(doc, tmp_path / "elsewhere").storage_path == str(tmp_path / "out")


def test_spec_hash_is_stable_and_follows_every_field(tmp_path):
    doc = tiny_doc()
    h = build_spec(doc, tmp_path).spec_hash()
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert build_spec(copy.deepcopy(doc), tmp_path).spec_hash() == h
    assert build_spec(dict(reversed(list(doc.items()))), tmp_path).spec_hash() == h  # key order is irrelevant
    same_kn = with_changes(doc, {"conditions.kn": [1 / 12, 1 / 6]})  # "1/12" and 1/12 are the same study
    assert build_spec(same_kn, tmp_path).spec_hash() == h
    changed = [
        {"budget.trials_per_condition": 4}, {"seed": 1}, {"conditions.snr_db": [5]}, {"trial.batch_size": 8},
        {"search_space.tau": {"low": 0.1, "high": 1.0}}, {"sampler.name": "tpe"}, {"name": "tiny2"},
    ]
    hashes = {build_spec(with_changes(doc, c), tmp_path).spec_hash() for c in changed}
    assert len(hashes) == len(changed) and h not in hashes
    assert build_spec(doc, tmp_path / "other").spec_hash() == h  # where it runs is not the science (issue 11)


def test_a_written_spec_reads_back_to_the_same_hash(tmp_path):
    """What the study folder stores (``spec.yaml``, the model dump) is what ``resume`` reads."""
    spec = build_spec({"preset": "paper", "dataset": {"search_dirs": ["data"]}}, tmp_path)
    path = write(tmp_path / "spec.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    again = load_spec(path)
    assert again == spec and again.spec_hash() == spec.spec_hash()


def test_build_spec_refuses_a_document_that_is_not_a_mapping(tmp_path):
    for doc in ([1, 2], "name: x", None, 3):
        with pytest.raises(ConfigError) as info:
            build_spec(doc, tmp_path)
        assert info.value.problems[0][0] == "<root>" and "expected a mapping" in info.value.problems[0][1]


@pytest.mark.parametrize("text, path, reason", [
    ("", "<file>", "is empty"),
    ("# only a comment\n", "<file>", "is empty"),
    ("name: [\n", "<file>", "not valid YAML at line 2"),
    ("name: tiny\n\tbudget: 1\n", "<file>", "not valid YAML at line 2"),
    ("!!python/object/apply:os.system ['echo hi']\n", "<file>", "unsupported YAML tag at line 1"),
    ("name: !!python/name:os.system\n", "<file>", "unsupported YAML tag"),
    ("name: !custom x\n", "<file>", "unsupported YAML tag"),
    ("name: a\nname: b\n", "<file>", "line 2, column 1: duplicate key 'name'"),
    ("budget: {stage1_epochs: 1, stage1_epochs: 2}\n", "<file>", "duplicate key 'stage1_epochs'"),
    ("seed: !!int x\n", "<file>", "cannot read 'x' as int"),
    ("name: 2001-02-30\n", "<file>", "line 1, column 7: cannot read '2001-02-30' as timestamp"),
    ("flag: !!bool maybe\n", "<file>", "cannot read 'maybe' as bool"),
    ("a: *nowhere\n", "<file>", "undefined alias"),
    ("a: " + "[" * 60 + "]" * 60 + "\n", "<file>", "nested more than 50 levels deep"),
    ("a: &a [*a]\n", "<file>", "once YAML aliases are expanded"),
    ("- a\n- b\n", "<root>", "expected a mapping of fields, got a YAML list"),
    ("3\n", "<root>", "got a YAML int"),
    ("1: 2\n", "<root>", "field names must be strings, got 1"),
])
def test_load_spec_names_file_problems(tmp_path, text, path, reason):
    found = problems_of_file(write(tmp_path / "study.yaml", text))
    assert list(found) == [path] and reason in found[path], found


def test_a_billion_laughs_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10**10 values expanded
    start = time.monotonic()
    found = problems_of_file(write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n"))
    assert time.monotonic() - start < 10
    assert "more than 100,000 values once YAML aliases are expanded" in found["<file>"]


def test_anchors_and_merge_key_overrides_still_work(tmp_path):
    text = yaml.safe_dump(with_changes(tiny_doc(), {"search_space": DELETE})) + (
        "search_space:\n"
        "  alpha2: &range {low: 0.1, high: 0.5}\n"
        "  alpha1: {<<: *range, high: 0.9}\n"  # overriding a merged key is not a duplicate key
    )
    spec = load_spec(write(tmp_path / "study.yaml", text))
    assert spec.search_space.alpha1 == FloatRange(low=0.1, high=0.9)
    assert spec.search_space.alpha2 == FloatRange(low=0.1, high=0.5)


def test_missing_and_unreadable_files_are_named(tmp_path):
    assert "does not exist" in problems_of_file(tmp_path / "nope.yaml")["<file>"]
    assert "is not a file" in problems_of_file(tmp_path)["<file>"]
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    assert "UnicodeDecodeError" in problems_of_file(tmp_path / "latin1.yaml")["<file>"]
    (tmp_path / "big.yaml").write_text("a: " + "x" * 1_100_000 + "\n")
    assert "larger than 1,000,000 bytes" in problems_of_file(tmp_path / "big.yaml")["<file>"]


def test_set_overrides_read_values_with_the_same_safe_loader():
    assert parse_override("codec.kn=1/12") == ("codec.kn", "1/12")
    assert parse_override("loss.tau=0.5") == ("loss.tau", 0.5)
    for bad in ("seed=!!int x", "data.root=2001-02-30", "x=!!python/name:os.system", "x=[1"):
        with pytest.raises(ConfigError) as info:
            parse_override(bad)
        assert info.value.problems[0][0] == bad.split("=")[0]


def test_error_lines_stay_one_line_each():
    doc = with_changes(tiny_doc(), {"trial.bad\nkey": 1, "name": "two\nlines\u2028here"})
    with pytest.raises(ConfigError) as info:
        build_spec(doc, ROOT)
    lines = info.value.lines()
    assert len(lines) == 2 and all(line.startswith("error: ") and len(line.splitlines()) == 1 for line in lines)
    assert "error: trial.'bad\\nkey': unknown field" in lines  # an odd key is quoted, its line break escaped


# -- the command line --------------------------------------------------------------------------


def test_validate_in_process_prints_ok_or_error_lines(tmp_path, capsys):
    good = write(tmp_path / "good.yaml", yaml.safe_dump(tiny_doc()))
    assert main(["validate", str(good)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: study 'tiny': 2 conditions x methods proposed, 6 trials") and err == ""
    bad = write(tmp_path / "bad.yaml", yaml.safe_dump(with_changes(tiny_doc(), {"seed": -1, "sampler.name": "x"})))
    assert main(["validate", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and [line.split(":")[1].strip() for line in err.splitlines()] == ["sampler.name", "seed"]


CLI_CASES = {
    "missing file": (None, 2, ["error: <file>: ", "does not exist"]),
    "empty file": ("", 2, ["error: <file>: ", "is empty"]),
    "not YAML": ("name: [unclosed\nbudget: {\n", 2, ["error: <file>: not valid YAML at line"]),
    "object-building tag": ("!!python/object/apply:os.system ['echo hi']\n", 2,
                            ["error: <file>: unsupported YAML tag"]),
    "unknown key": (yaml.safe_dump(tiny_doc(bogus=1)), 2, ["error: bogus: unknown field"]),
    "out of range": (yaml.safe_dump(with_changes(tiny_doc(), {
        "search_space.alpha2": {"low": 0, "high": 1.2}, "search_space.tau": {"value": 0},
        "conditions.kn": ["1/12", "1/1000", 0], "budget.trials_per_condition": 0, "resources": {"gpu": 1.5},
        "sampler.name": "annealing", "pruner.name": "wilcoxon",
    })), 2, ["error: search_space.alpha2: ", "error: search_space.tau: ", "error: conditions.kn.1: ",
             "error: conditions.kn.2: ", "error: budget.trials_per_condition: ", "error: resources.gpu: ",
             "error: sampler.name: ", "error: pruner: "]),
    "valid": (yaml.safe_dump(tiny_doc()), 0, []),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_validate_command_in_a_real_process(tmp_path, case):
    text, code, expected = CLI_CASES[case]
    path = tmp_path / "study.yaml"
    if text is not None:
        path.write_text(text)
    r = subprocess.run(SEMTUNE + ["validate", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    if code == 0:
        assert r.stderr == "" and r.stdout.startswith("ok: study 'tiny'")
        return
    lines = r.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), r.stderr
    assert len(lines) == len([e for e in expected if e.startswith("error: ")]), r.stderr
    for fragment in expected:
        assert fragment in r.stderr, r.stderr


def test_each_condition_and_method_is_an_arm_with_its_own_budget(tmp_path):
    """A method is searched only over the parameters it uses; a finite space caps its trials."""
    from orchestrator.spec import study_arms

    doc = tiny_doc()
    doc.update(methods=["proposed", "deepjscc", "deepjscc_ft", "deepsc"],
               conditions={"channel": ["awgn", "rayleigh"], "snr_db": [20], "kn": ["1/12"]},
               search_space={"alpha1": {"choices": [0.5, 0.9]}, "alpha2": {"choices": [0.1, 0.5, 0.9]},
                             "tau": {"low": 0.1, "high": 1.0}})
    doc["budget"]["trials_per_condition"] = 5
    arms = study_arms(build_spec(doc, tmp_path))
    assert [(a.name, a.trials) for a in arms[:4]] == [
        ("snr20_kn1-12/proposed", 5),  # tau is continuous
        ("snr20_kn1-12/deepjscc", 1),  # searches nothing
        ("snr20_kn1-12/deepjscc_ft", 3),  # alpha2 only: 3 choices
        ("snr20_kn1-12/deepsc", 2),  # alpha1 only (its stage 2 has no L_rec)
    ]
    assert [a.name for a in arms[4:]] == [f"rayleigh_snr20_kn1-12/{m}" for m in
                                          ("proposed", "deepjscc", "deepjscc_ft", "deepsc")]
    assert arms[5].as_config() == {"arm": "rayleigh_snr20_kn1-12/deepjscc", "condition": "rayleigh_snr20_kn1-12",
                                   "channel_model": "rayleigh", "snr_db": 20.0, "kn": 1 / 12, "method": "deepjscc"}
    with pytest.raises(ConfigError, match="conditions.channel.0"):
        build_spec({**doc, "conditions": {"channel": ["fading"], "snr_db": [20], "kn": ["1/12"]}}, tmp_path)
