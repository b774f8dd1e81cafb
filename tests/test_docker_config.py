"""docker/: the cluster config passes Ray's own validation, and the image, Dockerfile and pyproject agree.

Nothing here builds an image or starts a cluster: these are static checks of docker/Dockerfile,
docker/Dockerfile.dockerignore, docker/cluster.yaml and docker/README.md against pyproject.toml and the
installed Ray.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "docker" / "Dockerfile.dockerignore"
CLUSTER_YAML = ROOT / "docker" / "cluster.yaml"
LOCAL_CLUSTER_YAML = ROOT / "docker" / "local-cluster.yaml"  # the launcher on machines you have (local provider)
DOCKER_README = ROOT / "docker" / "README.md"
PYPROJECT = ROOT / "pyproject.toml"

# The Dockerfile names the image it builds on one comment line; cluster.yaml and the README repeat it.
IMAGE_LINE = re.compile(r"^# semtune-image:\s*(\S+)\s*$", re.MULTILINE)
RAY_BASE = re.compile(r"^rayproject/ray:(?P<version>\d+\.\d+\.\d+)-py(?P<py>3\d+)-(?P<platform>cpu|gpu|cu\d+)$")


# ---------------------------------------------------------------- parsing helpers

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comment lines dropped, as Docker does."""
    out, buf = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (buf and not line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def copy_instructions(instructions: list[tuple[str, str]]) -> list[tuple[int, list[str], str]]:
    """(position, sources, destination) of every COPY/ADD from the build context (not `--from` a stage)."""
    found = []
    for i, (word, args) in enumerate(instructions):
        if word not in ("COPY", "ADD"):
            continue
        parts = json.loads(args) if args.startswith("[") else shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        found.append((i, parts[:-1], parts[-1]))
    return found


def _norm(path: str) -> str:
    path = path.strip()
    while path.startswith("./"):
        path = path[2:]
    return path.rstrip("/")


def base_image(instructions: list[tuple[str, str]]) -> str:
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms, "docker/Dockerfile has no FROM"
    tokens = [t for t in shlex.split(froms[-1]) if not t.startswith("--")]  # drop --platform=...
    return tokens[0]


def top_level_packages(pyproject: dict) -> list[str]:
    """The top-level names of `[tool.setuptools.packages.find] include` (e.g. "trainables*" -> "trainables")."""
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.split(".")[0].rstrip("*") for pattern in include})


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether `path` (relative to the context) is left out, by .dockerignore rules: the last pattern that
    matches the path or one of its parent folders decides; `!` re-includes; `**` spans folders."""
    def to_regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        rx = to_regex(raw[1:] if negate else raw)
        if any(rx.match(c) for c in candidates):
            excluded = not negate
    return excluded


def read_dockerignore() -> list[str]:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    return [ln.strip("/") if not ln.startswith("!") else "!" + ln[1:].strip("/") for ln in lines
            if ln and not ln.startswith("#")]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


@pytest.fixture(scope="module")
def dockerfile_text() -> str:
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def instructions(dockerfile_text: str) -> list[tuple[str, str]]:
    return dockerfile_instructions(dockerfile_text)


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module", params=[CLUSTER_YAML, LOCAL_CLUSTER_YAML], ids=lambda p: p.name)
def any_cluster(request) -> dict:
    """Each launcher config semtune ships: the rules of every cluster hold for both."""
    return yaml.safe_load(request.param.read_text())


@pytest.fixture(scope="module")
def built_image(dockerfile_text: str) -> str:
    names = IMAGE_LINE.findall(dockerfile_text)
    assert len(names) == 1, f"docker/Dockerfile must name its image on exactly one '# semtune-image:' line, found {names}"
    return names[0]


# ---------------------------------------------------------------- cluster.yaml

def test_cluster_yaml_matches_rays_json_schema(cluster: dict) -> None:
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(cluster, schema)  # raises ValidationError naming the offending field
    assert cluster["cluster_name"] == "semtune"


def test_local_cluster_yaml_passes_the_validation_ray_up_runs() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    local = yaml.safe_load(LOCAL_CLUSTER_YAML.read_text())
    validate_config(prepare_config(copy.deepcopy(local)))
    assert local["provider"]["type"] == "local"


def test_cluster_yaml_passes_the_validation_ray_up_runs(cluster: dict) -> None:
    """`ray up` fills in the provider's defaults, then validates: schema, head type, worker counts, docker."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    workers = [t for name, t in prepared["available_node_types"].items() if name != prepared["head_node_type"]]
    assert workers and all(t["max_workers"] >= 1 for t in workers), "every worker type must be able to scale up"


def test_head_starts_the_mlflow_server_the_readme_points_studies_at(cluster: dict) -> None:
    """The head starts an MLflow server the workers can reach, on the port docker/README.md gives for tracking_uri."""
    setup = " ".join(cluster["head_setup_commands"])
    assert "mlflow server" in setup, "the head must start the MLflow tracking server"
    port = re.search(r"--port[ =](\d+)", setup)
    assert port, "give the MLflow server an explicit --port"
    readme_ports = set(re.findall(r"tracking_uri: http://<head private ip>:(\d+)", DOCKER_README.read_text()))
    assert readme_ports == {port.group(1)}, f"README tracking_uri ports {readme_ports} != server port {port.group(1)}"


def test_mlflow_listens_on_the_heads_private_address_only(cluster: dict) -> None:
    """The workers reach MLflow at the address Ray gives them for the head; no other interface listens."""
    setup = " ".join(cluster["head_setup_commands"])
    host = re.search(r"--host[ =](\S+)", setup)
    assert host and host.group(1) == '"$HEAD_IP"', f"the MLflow server binds {host and host.group(1)}, not $HEAD_IP"
    assert "HEAD_IP=$(python -c 'import ray.util; print(ray.util.get_node_ip_address())')" in setup


@pytest.mark.parametrize("path", [CLUSTER_YAML, LOCAL_CLUSTER_YAML], ids=lambda p: p.name)
def test_no_server_listens_on_every_interface(path: Path) -> None:
    assert "0.0.0.0" not in path.read_text(), f"{path.name} must not bind (or suggest binding) every interface"


def test_ray_token_authentication_is_on(any_cluster: dict) -> None:
    """Every `ray start` runs with token auth, and the token Ray reads reaches every node."""
    cluster = any_cluster
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cluster[key]
              if "ray start" in c]
    assert len(starts) == 2, f"expected one `ray start` for the head and one for the workers, got {starts}"
    for command in starts:
        assert re.search(r"(^|[\s;])RAY_AUTH_MODE=token ray start\b", command), command
    assert cluster["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    head = next(c for c in cluster["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head, "the dashboard and job API listen on the head's 127.0.0.1 only"


def test_ray_job_stop_leaves_time_for_a_graceful_stop(any_cluster: dict) -> None:
    """`ray job stop`: SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (Ray's default: 3 s)."""
    from ray.dashboard.modules.job.job_supervisor import JobSupervisor

    head = next(c for c in any_cluster["head_start_ray_commands"] if "ray start" in c)
    wait = re.search(r"(?:^|[\s;])RAY_JOB_STOP_WAIT_TIME_S=(\d+)\b[^;]*\bray start\b", head)
    assert wait, "the head's `ray start` must set RAY_JOB_STOP_WAIT_TIME_S (the job supervisor reads it there)"
    assert int(wait.group(1)) >= 60 > JobSupervisor.DEFAULT_RAY_JOB_STOP_WAIT_TIME_S


def test_two_paper_trials_share_each_gpu_worker(cluster: dict) -> None:
    """Fractional GPUs pack: the paper preset's trial resources fit twice on one GPU worker node."""
    from search_spaces import load_preset

    trial = load_preset("paper")["resources"]
    workers = {name: t["resources"] for name, t in cluster["available_node_types"].items()
               if name != cluster["head_node_type"]}
    for name, node in workers.items():
        assert {"CPU", "GPU"} <= set(node), f"declare {name}'s resources in cluster.yaml: {{CPU: n, GPU: m}}"
    gpu_workers = {name: node for name, node in workers.items() if node["GPU"] > 0}
    assert gpu_workers, "cluster.yaml has no GPU worker type"
    for name, node in gpu_workers.items():
        fit = min(math.floor(node["CPU"] / trial["cpu"]), math.floor(node["GPU"] / trial["gpu"]))
        assert fit >= 2, f"{name} ({node}) fits {fit} paper trial(s) of {trial}; fractional GPUs would not pack"


# ---------------------------------------------------------------- image name and base

def test_cluster_runs_the_image_the_dockerfile_builds(cluster: dict, built_image: str, pyproject: dict) -> None:
    docker = cluster["docker"]
    images = [docker["image"], docker.get("head_image"), docker.get("worker_image")]
    images += [t.get("docker", {}).get("worker_image") for t in cluster["available_node_types"].values()]
    for image in filter(None, images):
        assert image == built_image, f"cluster.yaml runs {image!r}, docker/Dockerfile builds {built_image!r}"
    tag = built_image.rsplit(":", 1)[-1] if ":" in built_image.rsplit("/", 1)[-1] else ""
    version = pyproject["project"]["version"]
    assert tag.startswith(f"{version}-"), f"image tag {tag!r} should start with the project version {version!r}"
    assert built_image in DOCKER_README.read_text(), "docker/README.md should build and push the same image"


def test_dockerfile_base_is_the_official_ray_image_of_the_installed_version(
    instructions: list[tuple[str, str]], pyproject: dict
) -> None:
    base = base_image(instructions)
    match = RAY_BASE.match(base)
    assert match, f"base image {base!r} is not a rayproject/ray:<version>-py3xx-<cpu|gpu|cuXXX> tag"
    assert match["version"] == ray.__version__, f"base image has Ray {match['version']}, installed is {ray.__version__}"
    pins = [Requirement(d) for d in pyproject["project"]["dependencies"]]
    ray_pin = next((r for r in pins if r.name == "ray"), None)
    assert ray_pin is not None and str(ray_pin.specifier) == f"=={match['version']}", (
        f"pyproject pins {ray_pin}, the base image has Ray {match['version']}")
    python = f"{match['py'][0]}.{match['py'][1:]}"
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(python), (
        f"the base image's Python {python} does not satisfy requires-python")


# ---------------------------------------------------------------- what goes into the image

def test_dockerfile_copies_every_package_before_installing(
    instructions: list[tuple[str, str]], pyproject: dict
) -> None:
    copies = copy_instructions(instructions)
    installs = [i for i, (word, args) in enumerate(instructions)
                if word == "RUN" and re.search(r"pip install\b[^;&|]*\s\.(\s|$)", args)]
    assert installs, "docker/Dockerfile must `pip install .` the project"
    packages = top_level_packages(pyproject)
    assert packages, "pyproject lists no packages"
    for pkg in packages:
        hits = [i for i, sources, dest in copies if [_norm(s) for s in sources] == [pkg] and _norm(dest) == pkg]
        assert hits, f"docker/Dockerfile must `COPY {pkg}/ ./{pkg}/` (one source per COPY keeps the folder)"
        assert min(hits) < installs[-1], f"{pkg} is copied after `pip install .`"
    copied_files = {_norm(s) for _, sources, _ in copies for s in sources}
    for needed in ("pyproject.toml", pyproject["project"]["readme"]):
        assert needed in copied_files, f"docker/Dockerfile must copy {needed} (pip install . needs it)"


def test_dockerignore_lets_through_everything_the_dockerfile_copies(instructions: list[tuple[str, str]]) -> None:
    patterns = read_dockerignore()
    checked = 0
    for _, sources, _ in copy_instructions(instructions):
        for source in map(_norm, sources):
            path = ROOT / source
            assert path.exists(), f"the Dockerfile copies {source!r}, which is not in the repository"
            files = [path] + [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                assert not dockerignore_excludes(patterns, rel), f"{DOCKERIGNORE.name} leaves out {rel}"
                checked += 1
    assert checked
    assert dockerignore_excludes(patterns, "trainables/__pycache__/x.cpython-311.pyc"), "__pycache__ should stay out"


def test_baked_checkpoints_match_the_code(dockerfile_text: str, instructions: list[tuple[str, str]]) -> None:
    """The checkpoints the image can bake are the ones trainables looks for, with the same sha256, in its cache."""
    from trainables.classifier.pretrained import PUBLIC_CHECKPOINTS

    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for w, a in instructions if w == "ENV")))
    assert "MLFLOW_TRACKING_URI" not in env, "the image must not set MLFLOW_TRACKING_URI"
    cache = env.get("SEMTUNE_MODEL_CACHE")
    assert cache == "/models", f"SEMTUNE_MODEL_CACHE is {cache!r}, expected /models"
    baked = {(digest, path) for digest, path in re.findall(r"\b([0-9a-f]{64})\s+(/\S+)", dockerfile_text)}
    expected = {(digest, f"{cache}/{name}") for name, digest, _ in PUBLIC_CHECKPOINTS.values()}
    assert baked == expected, f"sha256 checks in the Dockerfile {sorted(baked)} != the code's {sorted(expected)}"
    loop = re.search(r"for f in ([^;]+);", dockerfile_text)
    assert loop and set(loop.group(1).split()) == {name for name, _, _ in PUBLIC_CHECKPOINTS.values()}
