"""Ranking candidate policies inside a model: order, failures, seeds, Ray retries, and the report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from imaginarium.errors import ImaginariumError, PolicySpecError
from imaginarium.ranking import PolicyEntry, RankingResult, RankSettings, assemble
from imaginarium.report import METRIC_LABELS, markdown_report, write_report
from imaginarium.run.rank import rank_policies

TESTS = Path(__file__).parent


class _Constant(torch.nn.Module):
    def __init__(self, torque: float) -> None:
        super().__init__()
        self.torque = torque

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.full((observations.shape[0], 1), self.torque)


@pytest.fixture(scope="module")
def torchscript_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policies") / "still.pt"
    torch.jit.save(torch.jit.script(_Constant(0.0)), str(path))
    return path


def _rank(model: Path, policies: list, **options):
    settings = {"starts": 8, "real_env": "pendulum", "real_episodes": 3, "workers": 0, "progress": False}
    return rank_policies(model, policies, allow_code=True, **{**settings, **options})


def test_policies_are_ranked_with_intervals_and_failures_are_reported(
    pendulum_model: Path, torchscript_policy: Path, tmp_path: Path
) -> None:
    policies = [
        str(torchscript_policy),
        "random",
        "py:support.policies:push",
        str(tmp_path / "missing.zip"),
        "py:support.policies:wrong_shape",
        "py:support.policies:raises",
    ]
    result = _rank(pendulum_model, policies)
    ranked = result.ranked
    failed = {entry.path: entry.error for entry in result.failed}
    assert [entry.rank for entry in ranked] == [1, 2, 3]
    assert result.policies == ranked + result.failed  # failed ones last
    means = [entry.imagined_return["mean"] for entry in ranked]
    assert means == sorted(means, reverse=True)
    for entry in ranked:
        interval = entry.imagined_return
        assert interval["ci_low"] <= interval["mean"] <= interval["ci_high"]
        assert entry.real_return["ci_low"] <= entry.real_return["mean"] <= entry.real_return["ci_high"]
        assert entry.member_spread is not None and len(entry.member_returns) == 3  # xs: 3 elites
        predicted, alone = entry.predicted_real_return, entry.real_interval
        assert predicted["method"] == "ppi" and predicted["level"] == alone["level"] == 0.9
        assert predicted["low"] <= predicted["mean"] <= predicted["high"] and predicted["real_episodes"] == 3
        assert alone["mean"] == pytest.approx(entry.real_return["mean"])
    row = result.to_json()["policies"][0]
    assert PolicyEntry.from_json(row).predicted_real_return == ranked[0].predicted_real_return
    assert "90% intervals (prediction-powered" in markdown_report(result)
    assert "not found" in failed[str(tmp_path / "missing.zip")]
    assert (
        "shape (8, 3)" in failed["py:support.policies:wrong_shape"]
        or "shape" in failed["py:support.policies:wrong_shape"]
    )
    assert "this policy always fails" in failed["py:support.policies:raises"]
    assert set(result.metrics) == {
        "spearman",
        "kendall",
        "pearson",
        "regret_at_1",
        "regret_at_3",
        "abs_error",
        "mmrv",
    }


def _imagined(name: str, imagined: float, real: float | None) -> PolicyEntry:
    """An entry as a group gives it for a policy rolled in the model (and on the real task)."""
    return PolicyEntry(
        name=name,
        path=f"{name}.zip",
        imagined_return={"mean": imagined, "ci_low": imagined - 1, "ci_high": imagined + 1},
        imagined_success=0.5,
        uncertainty=0.1,
        outside_fraction=0.3 if name == "wanders" else 0.0,
        member_spread=1.0,
        member_returns=[imagined - 1, imagined + 1],
        imagined_length=200.0,
        diverged=0,
        success_source="rule:upright_last_20",
        real_return=None if real is None else {"mean": real, "ci_low": real - 1, "ci_high": real + 1},
        real_success=None if real is None else float(real > -500),
        seconds=0.5,
    )


def test_ranking_json_keeps_its_schema_and_reads_back_as_the_same_result(tmp_path: Path) -> None:
    entries = [
        _imagined("steady", -300.0, -250.0),
        PolicyEntry(
            name="missing",
            path="missing.zip",
            error="PolicySpecError: not found",
            traceback="...",
            seconds=0.1,
        ),
        _imagined("wanders", -100.0, -900.0),
        _imagined("real_fails", -200.0, None),
        PolicyEntry(name="dead", path="dead.zip", error="worker failed after 3 retries: RayError"),
    ]
    entries[3].error = "RuntimeError: the real env broke"
    result = assemble(entries, reference=2.5)
    result.settings = RankSettings(
        starts=8, horizon=200, time_limit=200, truncated=False, real_env="pendulum", real_episodes=3, seed=0,
        allow_code=False, workers=0, members="each", seconds=1.5, model="models/pendulum", task="pendulum",
    )  # fmt: skip
    assert [entry.name for entry in result.ranked] == ["wanders", "steady"]
    assert [entry.name for entry in result.failed] == ["missing", "real_fails", "dead"]
    assert not result.all_failed and result.ranked[0].uncertainty_warning  # 30% of its states outside
    written = json.loads(write_report(result, tmp_path / "report", videos=0)["json"].read_text())
    assert written == json.loads(json.dumps(result.to_json()))
    assert list(written) == [
        "policies", "metrics", "settings", "outside_threshold", "success_gap", "ranking_confidence",
        "top_confidence",
    ]  # fmt: skip
    schema = ["name", "path", "imagined_return", "imagined_success", "uncertainty", "real_return", "error"]
    imagined = ["outside_fraction", "member_spread", "member_returns", "imagined_length", "diverged"]
    imagined += ["success_source"]
    rows = {row["name"]: list(row) for row in written["policies"]}
    ranked = ["rank", "uncertainty_warning", "order_confidence"]
    assert rows["wanders"] == [*schema, *imagined, "real_success", "model_spread", "seconds", *ranked]
    assert rows["missing"] == [*schema, "seconds"]  # no traceback in the file
    assert rows["real_fails"] == [*schema, *imagined, "real_success", "model_spread", "seconds"]
    assert rows["dead"] == schema  # its worker died: no time measured
    assert written["settings"]["workers"] == 0 and written["outside_threshold"] == 2.5
    assert written["success_gap"] == 0.5  # both ranked imagined at 0.5, real 1 and 0
    assert set(written["metrics"]) >= {"spearman", "regret_at_1"}
    again = RankingResult.from_json(written)
    assert again.to_json() == written
    assert again.settings == result.settings and [entry.name for entry in again.ranked] == [
        "wanders",
        "steady",
    ]
    with pytest.raises(ValueError, match="unknown key 'imagined'"):
        PolicyEntry.from_json({"name": "a", "path": "a", "imagined": 1.0})


def test_the_same_seed_gives_the_same_ranking_and_another_seed_other_starts(pendulum_model: Path) -> None:
    policies = ["random", "py:support.policies:push"]
    first, second = (_rank(pendulum_model, policies, real_env=None) for _ in range(2))
    other = _rank(pendulum_model, policies, real_env=None, seed=1)

    def returns(result):
        return [entry.imagined_return["mean"] for entry in result.policies]

    assert returns(first) == returns(second)
    assert returns(first) != returns(other)
    assert first.metrics is None


def test_code_policies_need_explicit_permission(pendulum_model: Path) -> None:
    result = rank_policies(
        pendulum_model, ["py:support.policies:push"], starts=2, workers=0, progress=False, real_env=None
    )
    assert "allow it explicitly" in result.policies[0].error and result.all_failed
    with pytest.raises(PolicySpecError, match="allow it explicitly"):
        from imaginarium.policy import load_policy

        load_policy("py:support.policies:push", None, None)


def test_ray_workers_give_the_serial_results_and_a_killed_worker_loses_nothing(
    pendulum_model: Path, tmp_path: Path
) -> None:
    import ray

    policies = [
        "random",
        "py:support.policies:push",
        "py:support.policies:dies_once",
        "py:support.policies:always_dies",
    ]
    marker = tmp_path / "killed"
    os.environ["IMAGINARIUM_TEST_MARKER"] = str(marker)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {
                "PYTHONPATH": str(TESTS),
                "IMAGINARIUM_TEST_MARKER": str(marker),
                "OMP_NUM_THREADS": "1",
            }
        },
    )
    try:  # two groups of two in lockstep, dealt in turn: each has a policy whose worker dies, once or always
        on_ray = _rank(pendulum_model, policies, real_env=None, workers=2, retries=1)
    finally:
        ray.shutdown()
    assert marker.read_text() == "killed once"  # the worker really died, and Ray ran the policy again
    serial = _rank(pendulum_model, policies[:2], real_env=None)
    by_path = {entry.path: entry for entry in on_ray.policies}
    # the group that kept dying was split: only the policy to blame fails
    assert "worker failed after 1 retries" in by_path.pop("py:support.policies:always_dies").error
    assert all(entry.error is None for entry in by_path.values())
    for entry in serial.policies:
        assert by_path[entry.path].imagined_return == entry.imagined_return
    assert (
        by_path["py:support.policies:dies_once"].imagined_return
        == by_path["py:support.policies:push"].imagined_return
    )


def test_report_page_loads_in_chromium_with_every_image_rendered(
    pendulum_model: Path, torchscript_policy: Path, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make test` installs it"
    from playwright.sync_api import sync_playwright

    result = _rank(pendulum_model, [str(torchscript_policy), "random", "py:support.policies:push", "bad.zip"])
    paths = write_report(result, tmp_path / "report", model_dir=pendulum_model, videos=2, video_steps=10)
    ranking = json.loads(paths["json"].read_text())
    assert {"name", "path", "imagined_return", "imagined_success", "uncertainty", "real_return"} <= set(
        ranking["policies"][0]
    )
    assert "bad.zip" in paths["markdown"].read_text()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(paths["html"].resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "all => all.map(i => [i.alt, i.complete, i.naturalWidth])")
        page.screenshot(path=str(tmp_path / "report" / "screenshot.png"), full_page=True)
        browser.close()
    assert errors == []
    alts = [alt for alt, _, _ in images]
    assert "imagined against real return" in alts and sum("episode of" in alt for alt in alts) == 4
    assert all(complete and width > 0 for _, complete, width in images), images
    assert (tmp_path / "report" / "screenshot.png").stat().st_size > 10_000


def test_a_local_ray_started_for_ranking_stays_on_loopback_with_a_thread_per_worker(
    pendulum_model: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    marker = tmp_path / "address"
    script = (
        "from imaginarium.run.rank import rank_policies\n"
        f"rank_policies({str(pendulum_model)!r}, ['py:support.policies:records_node_address'], starts=2,\n"
        "              horizon=2, workers=1, allow_code=True, progress=False)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    # a user's own OMP_NUM_THREADS must not reach workers that each have one CPU
    env.update(PYTHONPATH=str(TESTS), IMAGINARIUM_TEST_MARKER=str(marker), OMP_NUM_THREADS="4")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert marker.read_text() == "127.0.0.1 1"
    assert "Token authentication is enabled" not in done.stderr  # token auth chosen, not defaulted


def test_ranking_starts_its_ray_when_the_caller_imported_ray_first(pendulum_model: Path) -> None:
    import subprocess
    import sys

    script = (
        "import ray\n"
        "from imaginarium.run.rank import rank_policies\n"
        f"rank_policies({str(pendulum_model)!r}, ['random'], starts=2, horizon=2, workers=1, progress=False)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]


def test_screening_with_one_member_per_start_agrees_with_every_member_at_a_fraction_of_the_steps(
    pendulum_model: Path, torchscript_policy: Path
) -> None:
    import imaginarium.models.ensemble as ensemble

    policies = [str(torchscript_policy), "random", "py:support.policies:push"]
    calls: dict[str, int] = {}
    original = ensemble.EnsembleModel.step

    def counting(self, state, actions, *args, **kwargs):
        calls[mode] = calls.get(mode, 0) + len(actions)
        return original(self, state, actions, *args, **kwargs)

    results = {}
    for mode in ("each", "one"):
        ensemble.EnsembleModel.step = counting
        try:
            results[mode] = _rank(
                pendulum_model, policies, starts=16, real_env=None, horizon=50, members=mode
            )
        finally:
            ensemble.EnsembleModel.step = original
    each, one = ({entry.path: entry for entry in results[mode].policies} for mode in ("each", "one"))
    assert all(entry.member_spread is None and entry.uncertainty is None for entry in one.values())
    assert all(entry.member_spread is not None for entry in each.values())
    assert calls["one"] * 2 < calls["each"]  # a member per start, not every member
    for path in policies:  # the same estimate within its noise
        assert (
            abs(one[path].imagined_return["mean"] - each[path].imagined_return["mean"])
            < 0.25 * abs(each[path].imagined_return["mean"]) + 5
        )
    with pytest.raises(ImaginariumError, match="members must be 'each' or 'one'"):
        _rank(pendulum_model, policies, members="all")


def test_a_small_ranking_left_to_choose_runs_in_this_process_without_starting_ray(
    pendulum_model: Path, torchscript_policy: Path
) -> None:
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
    result = rank_policies(
        pendulum_model, [str(torchscript_policy), "random"], starts=4, horizon=20, progress=False
    )
    assert result.settings.workers == 0 and len(result.policies) == 2
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_long_rankings_real_episodes_clusters_and_user_code_are_left_to_ray(
    pendulum_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imaginarium.models import load_world_model
    from imaginarium.run.rank import IN_PROCESS_STEPS, _in_process_pays

    model = load_world_model(pendulum_model)
    small = IN_PROCESS_STEPS // model.rollout_members
    policies = ["random", "sb3:agent.zip@noise=0.1"]
    assert _in_process_pays(None, policies, small, model, "each", None)
    assert not _in_process_pays(None, policies, small + model.rollout_members, model, "each", None)
    assert _in_process_pays(None, policies, small * model.rollout_members, model, "one", None)
    assert not _in_process_pays(None, policies, 10, model, "each", {"env": "pendulum", "episodes": 3})
    assert not _in_process_pays("ray://head:10001", policies, 10, model, "each", None)
    assert not _in_process_pays(None, ["random", "0.5*random + 0.5*py:mine:act"], 10, model, "each", None)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert not _in_process_pays(None, policies, 10, model, "each", None)


def test_groups_share_the_policies_costs_evenly_whatever_the_list_order() -> None:
    from imaginarium.run.rank import _groups

    alternating = [4.0, 1.0] * 4  # dealt in turn, one worker would get every wide network
    groups = _groups(alternating, None, 2)
    assert sorted(len(group) for group in groups) == [4, 4]
    assert [sum(alternating[index] for index in group) for group in groups] == [10.0, 10.0]
    assert _groups([1.0] * 7, None, 2) == [[0, 2, 4, 6], [1, 3, 5]]  # equal costs: dealt in turn
    assert all(len(group) <= 2 for group in _groups([9.0, 0.0, 0.0, 0.0, 0.0], 2, None))


def test_a_policy_costs_its_weights_and_its_noise_or_a_random_one_adds_none(tmp_path: Path) -> None:
    from stable_baselines3 import SAC

    from imaginarium.run.rank import POLICY_CALL_COST, _policy_cost

    sizes = {}
    for width in (16, 256):
        agent = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [width, width]}, device="cpu")
        agent.save(tmp_path / f"sac_{width}.zip")
        sizes[width] = _policy_cost(str(tmp_path / f"sac_{width}.zip"))
    assert sizes[256] > 50 * (sizes[16] - POLICY_CALL_COST)
    assert _policy_cost(f"sb3:{tmp_path / 'sac_256.zip'}@noise=0.3") == sizes[256]
    assert _policy_cost("random") == POLICY_CALL_COST
    assert _policy_cost(f"0.5*sb3:{tmp_path / 'sac_16.zip'} + 0.5*random") == sizes[16] + POLICY_CALL_COST
    assert _policy_cost("sb3:missing.zip") == POLICY_CALL_COST


def test_the_report_says_how_success_was_decided_how_far_it_held_and_what_each_column_means() -> None:
    result = assemble([_imagined("steady", -300.0, -250.0), _imagined("wanders", -100.0, -900.0)], 2.5)
    text = markdown_report(result)
    assert (
        "Imagined success applies the task's own rule, upright (cos θ > 0.95) over the last 20 steps" in text
    )
    assert "Over the 2 policies with real episodes it differs from real success by 0.50 on average." in text
    assert "the difference is the model's" in text  # a gap over 0.15 is explained
    for entry in result.ranked:
        entry.success_source = "head"
    text = markdown_report(result, success_auc=0.93)
    assert "comes from the model's success head" in text and "per-step AUC on held-out data: 0.93" in text
    assert "- **imagined success**: share of imagined episodes that succeed" in text
    assert "- **MMRV**: mean maximum rank violation" in text
    assert all(f"**{METRIC_LABELS[key]}**" in text for key in result.metrics)


def test_the_tasks_rules_judge_imagined_states_in_place_of_the_heads(
    pendulum_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from imaginarium.rewards import reward_rules, termination

    monkeypatch.setitem(reward_rules.REWARD_RULES, "Pendulum-v1", lambda s, a, n: np.ones(len(s)))
    options = {"starts": 4, "horizon": 7, "workers": 0, "progress": False}
    heads = rank_policies(pendulum_model, ["random"], **options).ranked[0]
    ruled = rank_policies(pendulum_model, ["random"], rules=True, **options)
    assert ruled.settings.rules and ruled.to_json()["settings"]["rules"] is True
    assert ruled.ranked[0].imagined_return["mean"] == pytest.approx(7.0)  # 1 a step, never ended
    assert heads.imagined_return["mean"] < 0  # the model's own reward: Pendulum's costs
    monkeypatch.setitem(
        termination.TERMINATION_RULES, "Pendulum-v1", lambda states: np.ones(len(states), bool)
    )
    ended = rank_policies(pendulum_model, ["random"], rules=True, **options).ranked[0]
    assert ended.imagined_return["mean"] == pytest.approx(1.0) and ended.imagined_length == pytest.approx(1.0)
