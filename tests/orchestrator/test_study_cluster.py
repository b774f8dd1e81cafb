"""(c) A study on a two-node ``ray.cluster_utils.Cluster`` with logical GPUs: 0.5-GPU trials use both nodes."""

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from orchestrator.spec import load_spec
from orchestrator.study.runner import run_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 2, "num_gpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2, num_gpus=1)
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def test_an_embedded_sqlite_store_is_refused_on_two_nodes(write_study, two_nodes):
    """Trials on the second node would write (or miss) the driver's sqlite file: refused before anything runs."""
    from trainables.config import ConfigError

    cluster, _ = two_nodes
    spec = load_spec(write_study(name="sqlite2", ray_address=cluster.address))
    with pytest.raises(ConfigError) as err:
        run_study(spec)
    assert [p[0] for p in err.value.problems] == ["tracking_uri"]
    assert "2 nodes" in err.value.problems[0][1]


def test_fractional_gpu_trials_land_on_both_nodes(write_study, two_nodes, mlflow_server):
    cluster, worker = two_nodes
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and ray.cluster_resources()["GPU"] == 2
    spec = load_spec(write_study(
        name="cluster", ray_address=cluster.address, tracking_uri=mlflow_server, resources={"cpu": 1, "gpu": 0.5},
        pruner={"name": "none"}, budget={"trials_per_condition": 2, "max_concurrent": 4,
                                         "stage1_epochs": 1, "stage2_epochs": 1}))
    outcome = run_study(spec)
    runs = MlflowClient(outcome.tracking_uri).search_runs(
        [outcome.experiment_id], filter_string="tags.`semtune.kind` = 'trial'")
    assert len(runs) == 4 and all(r.data.tags["semtune.status"] == "completed" for r in runs)
    used = {r.data.tags["semtune.node_id"] for r in runs}
    # Four 0.5-GPU trials at once need both nodes' single logical GPU.
    assert used == nodes, (used, nodes)
