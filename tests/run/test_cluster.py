"""A real multi-node Ray cluster: two nodes on this machine, both on 127.0.0.1, with different resources;
``rank`` and ``tune`` join it with ``--address`` from the command line, as on a cluster made by
``ray up`` or KubeRay.

The nodes are started by Ray's own ``ray.cluster_utils.Cluster``, which starts the same GCS and raylet
processes ``ray start`` starts. ``ray start --address`` itself cannot add a second node here: with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (every socket on loopback) it refuses to join, and without it
Ray puts every node on the machine's network address, where nothing may listen on this machine.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
IMAGINARIUM = str(Path(sys.executable).parent / "imaginarium")
#: policies that note the node they ran on, one group each so the cluster spreads them
POLICIES = [f"py:support.policies:records_node@noise={noise}" for noise in (0.1, 0.2, 0.3, 0.4)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Two one-CPU nodes (resources ``first`` and ``second``) and the folder where policies note their
    node; the nodes' workers find the test policies on ``PYTHONPATH``. Ray reads its authentication
    mode when first imported, so the environment is set first. Nodes started this way do not make a
    token as ``ray.init`` does (the test then depended on one an earlier test left in ``~/.ray``), so
    the fixture makes it where ``ray.init`` would. It must be that token, not one of the test's own:
    this process caches the token it first sends, and later tests' ``ray.init`` start clusters that
    read ``~/.ray/auth_token``."""
    nodes = tmp_path_factory.mktemp("nodes")
    saved = {
        key: os.environ.get(key)
        for key in ("PYTHONPATH", "IMAGINARIUM_TEST_NODES", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
    }
    os.environ.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), saved["PYTHONPATH"]])),
        IMAGINARIUM_TEST_NODES=str(nodes),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=_local_ray_token(),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    )
    from ray.cluster_utils import Cluster

    made = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"first": 1}, "include_dashboard": False},
    )
    try:
        made.add_node(num_cpus=1, resources={"second": 1})
        yield made.address, nodes
    finally:
        made.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _local_ray_token() -> str:
    """The token a local ``ray.init`` uses, made (as Ray makes it) when there is none yet."""
    path = Path.home() / ".ray" / "auth_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _run(arguments: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run([IMAGINARIUM, *arguments], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_cluster_has_two_nodes_on_loopback(cluster: tuple[str, Path]) -> None:
    address, _ = cluster
    script = (
        "import ray\n"
        f"ray.init(address={address!r}, logging_level='warning')\n"
        "print(sorted((n['NodeManagerAddress'], sorted(k for k in n['Resources'] if k in ('first', 'second')))"
        " for n in ray.nodes() if n['Alive']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[('127.0.0.1', ['first']), ('127.0.0.1', ['second'])]"


def test_rank_with_address_spreads_over_both_nodes_and_matches_a_local_run(
    cluster: tuple[str, Path], pendulum_model: Path, tmp_path: Path
) -> None:
    from imaginarium.run.rank import rank_policies

    address, nodes = cluster
    settings = ["--starts", "4", "--horizon", "30", "--group", "1", "--allow-code", "--no-progress"]
    _run(["rank", "--model", str(pendulum_model), "--policies", *POLICIES, "--address", address]
         + ["--report", str(tmp_path / "report"), *settings])  # fmt: skip
    ranked = json.loads((tmp_path / "report" / "ranking.json").read_text())["policies"]
    assert all(row["error"] is None for row in ranked), [row["error"] for row in ranked]
    assert len(list(nodes.iterdir())) == 2, "every policy ran on one node"
    local = rank_policies(
        pendulum_model, POLICIES, starts=4, horizon=30, workers=0, allow_code=True, progress=False
    )
    here = {entry.path: entry.imagined_return["mean"] for entry in local.ranked}
    assert {row["path"]: pytest.approx(row["imagined_return"]["mean"], rel=1e-6) for row in ranked} == here


def test_tune_with_address_searches_on_the_cluster(
    cluster: tuple[str, Path], pendulum_model: Path, tmp_path: Path
) -> None:
    address, _ = cluster
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {loguniform: [0.0001, 0.001]}\nn_steps: {choice: [32]}\n")
    _run(["tune", "--model", str(pendulum_model), "--algo", "ppo", "--samples", "2", "--steps", "128"]
         + ["--reports", "2", "--space", str(space), "--top-k", "1", "--real-episodes", "1"]
         + ["--address", address, "--out", str(tmp_path / "search")])  # fmt: skip
    report = json.loads((tmp_path / "search" / "tune.json").read_text())
    assert len(report["trials"]) == 2 and all(trial["score"] is not None for trial in report["trials"])
    assert report["best_agent"] and Path(report["best_agent"]).exists()
