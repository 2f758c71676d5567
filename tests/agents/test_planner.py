"""The planning policy: it finds what a known model rewards, avoids futures that end the episode,
handles discrete actions and batches of envs, and is named by the ``plan:`` spec everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from imaginarium.agents.planner import Planner, PlannerConfig, coloured_noise
from imaginarium.agents.shield import ShieldConfig, ShieldPolicy
from imaginarium.envs.suite import get_task
from imaginarium.errors import ImaginariumError, PolicySpecError
from imaginarium.evaluation import real_rollouts
from imaginarium.models.base import StepOutput, WorldModel
from imaginarium.policy import MixturePolicy, load_policy

GOAL = 2.0
CLIFF = -1.0


class LineWorld(WorldModel):
    """A point on a line whose dynamics the test knows: ``x' = x + 0.5 a``.

    ``goal``: reward ``-(x' - 2)²``. ``cliff``: reward 1 a step plus 0.3 for each unit moved left, and
    the episode ends once ``x' < -1`` (so greed walks off the cliff; planning does not).
    With three discrete actions they move ``-0.5``, ``0``, ``+0.5``.
    """

    family = "line"

    def __init__(self, task: str = "goal", discrete: bool = False) -> None:
        actions = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        super().__init__(gym.spaces.Box(-10.0, 10.0, (1,), np.float32), actions, None)
        self.task = task
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a module with a device

    def move(self, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return (actions.float() - 1.0) * 1.0
        return actions.reshape(-1)

    def step(self, state, actions, sample=True, *, uncertainty=True, generator=None, tiles=1):  # noqa: ANN001, ANN201
        move = self.move(actions)
        position = state["observation"][:, 0] + 0.5 * move
        if self.task == "goal":
            reward = -((position - GOAL) ** 2)
            going_on = torch.ones_like(position)
        else:
            reward = 1.0 - 0.3 * move
            going_on = (position >= CLIFF).float()
        return StepOutput(
            {"observation": position[:, None]},
            reward,
            torch.zeros_like(position),
            going_on,
            torch.zeros_like(position) if uncertainty else None,
        )

    def initial_state(self, observations: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"observation": observations.float()}

    def observe(self, observations: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.initial_state(observations[:, -1])

    def decode(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return state["observation"]

    def features(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return state["observation"]

    def fit_normalizers(self, dataset) -> None:  # noqa: ANN001
        raise NotImplementedError

    def loss(self, batch):  # noqa: ANN001, ANN201
        raise NotImplementedError

    def predict_transitions(self, batch):  # noqa: ANN001, ANN201
        raise NotImplementedError


def run(planner: Planner, model: LineWorld, starts: list[float], steps: int) -> np.ndarray:
    """Act ``steps`` times in the model taken as the real system; every row's positions ``(steps, N)``."""
    positions = np.asarray(starts, dtype=np.float32)[:, None]
    planner.reset(np.arange(len(starts)))
    trace = []
    for _ in range(steps):
        actions = planner.act(positions)
        assert model.action_space.contains(actions[0])
        positions = positions + 0.5 * model.move(torch.as_tensor(actions)).numpy()[:, None]
        trace.append(positions[:, 0].copy())
    return np.asarray(trace)


@pytest.mark.parametrize(("method", "noise_beta"), [("cem", 0.0), ("mppi", 0.0), ("mppi", 2.0)])
def test_the_planner_drives_a_known_system_to_where_the_reward_is(method: str, noise_beta: float) -> None:
    model = LineWorld("goal")
    config = PlannerConfig(method=method, horizon=8, samples=64, elites=8, noise_beta=noise_beta, seed=1)
    planner = Planner(model, config)
    trace = run(planner, model, [0.0, 4.5], steps=12)
    assert np.abs(trace[-1] - GOAL).max() < 0.15  # both rows, from either side: rows plan apart


def test_futures_that_end_the_episode_lose_to_ones_that_go_on() -> None:
    model = LineWorld("cliff")
    greedy = Planner(model, PlannerConfig(horizon=1, samples=64, seed=0))
    assert run(greedy, model, [0.0], steps=10).min() < CLIFF  # one step ahead, the edge pays
    careful = Planner(model, PlannerConfig(horizon=10, samples=128, seed=0))
    assert run(careful, model, [0.0], steps=20).min() >= CLIFF


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_discrete_actions_are_planned_too(method: str) -> None:
    model = LineWorld("goal", discrete=True)
    planner = Planner(model, PlannerConfig(method=method, horizon=6, samples=64, elites=8, seed=2))
    trace = run(planner, model, [-1.0], steps=10)
    assert trace.dtype == np.float32 and abs(trace[-1, 0] - GOAL) < 0.01


def test_a_new_episode_forgets_the_last_plan_and_a_new_batch_size_is_taken() -> None:
    model = LineWorld("goal")
    planner = Planner(model, PlannerConfig(horizon=6, samples=64, seed=3))
    run(planner, model, [0.0], steps=5)
    trace = run(planner, model, [6.0, 0.0, -2.0], steps=14)
    assert np.abs(trace[-1] - GOAL).max() < 0.15


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "beam"}, "method"),
        ({"samples": 0}, "samples"),
        ({"method": "cem", "elites": 80, "samples": 64}, "elites"),
        ({"temperature": 0.0}, "temperature"),
        ({"noise_beta": -1.0}, "noise_beta"),
        ({"max_nmse": -0.1}, "max_nmse"),
    ],
)
def test_meaningless_settings_are_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(ImaginariumError, match=message):
        PlannerConfig(**options)


@pytest.mark.parametrize("horizon", [7, 24, 25])
def test_coloured_noise_keeps_unit_variance_at_every_step_and_smooths_more_with_a_higher_exponent(
    horizon: int,
) -> None:
    generator = torch.Generator().manual_seed(0)
    neighbours = []
    for exponent in (0.0, 1.0, 2.0):
        noise = coloured_noise((20_000, horizon, 2), exponent, generator, "cpu")
        assert noise.shape == (20_000, horizon, 2)
        assert torch.allclose(noise.std(0), torch.ones(horizon, 2), atol=0.03)  # every step, every action
        assert noise.mean().abs() < 0.02
        steps = noise[:, :-1].flatten(), noise[:, 1:].flatten()
        neighbours.append(float(torch.corrcoef(torch.stack(steps))[0, 1]))
    actions = torch.corrcoef(torch.stack([noise[..., 0].flatten(), noise[..., 1].flatten()]))[0, 1]
    assert abs(neighbours[0]) < 0.02 and 0.1 < neighbours[1] < neighbours[2]  # white, then smoother
    assert abs(float(actions)) < 0.02  # each action dimension drawn apart


@pytest.mark.parametrize(
    ("model_name", "particles"), [("pendulum_model", 1), ("pendulum_model", 3), ("cartpole_model", 1)]
)
def test_one_envs_futures_step_compiled_and_are_drawn_as_the_models_own_step_draws_them(
    model_name: str, particles: int, request: pytest.FixtureRequest
) -> None:
    """The planner steps one env's futures in one compiled call; over many draws from one state its
    next states, rewards and continue probabilities have the model's own step's means and spreads,
    and futures pinned to members (``particles``) stay pinned."""
    from imaginarium.models import load_world_model

    model = load_world_model(request.getfixturevalue(model_name))
    planner = Planner(model, PlannerConfig(particles=particles, seed=4))
    assert planner._rows is not None
    rows = 120
    observations = torch.as_tensor(model.starts.inputs[:1], dtype=torch.float32).repeat(rows, 1)
    state = model.initial_state(observations)
    if particles > 1:
        state = model.pin_members(state, torch.zeros(rows, dtype=torch.long))  # all on the first member
    space = model.action_space
    actions = (
        torch.full((rows,), int(space.n) - 1)
        if planner.discrete
        else torch.as_tensor(space.high, dtype=torch.float32).repeat(rows, 1) * 0.5
    )
    generator = torch.Generator().manual_seed(0)
    compiled, own = [], []
    for _ in range(40):
        out = planner._step(state, actions, penalised=False)
        if particles > 1:
            assert torch.equal(out.state["member"], state["member"])
        compiled.append(
            torch.cat([out.state["observation"], out.reward[:, None], out.continue_prob[:, None]], 1)
        )
        out = model.step(state, actions, uncertainty=False, generator=generator)
        own.append(torch.cat([out.state["observation"], out.reward[:, None], out.continue_prob[:, None]], 1))
    compiled, own = torch.cat(compiled), torch.cat(own)
    scale = own.std(0) + 1e-3
    assert ((compiled.mean(0) - own.mean(0)).abs() / scale).max() < 0.1
    assert ((compiled.std(0) - own.std(0)).abs() / scale).max() < 0.1


def test_particles_need_an_ensemble() -> None:
    with pytest.raises(ImaginariumError, match="ensemble"):
        Planner(LineWorld(), PlannerConfig(particles=4))


def test_the_plan_spec_loads_a_planner_with_its_options(pendulum_model: Path) -> None:
    task = get_task("pendulum", max_episode_steps=20)
    spec = f"plan:{pendulum_model}@method=cem,horizon=4,samples=16,elites=4,particles=2,pessimism=1"
    policy = load_policy(spec, task.observation_space, task.action_space, seed=0)
    assert isinstance(policy, Planner)
    assert (policy.config.method, policy.config.horizon, policy.config.particles) == ("cem", 4, 2)
    outcome = real_rollouts(task, policy, episodes=2, seed=0)
    assert np.isfinite(outcome.return_["mean"])
    noisy = load_policy(
        f"plan:{pendulum_model}@horizon=3,samples=8,noise=0.5", task.observation_space, task.action_space
    )
    assert task.action_space.contains(noisy.act(np.zeros((1, 3), np.float32))[0])


@pytest.mark.parametrize(
    ("suffix", "message"),
    [("@horizn=3", "horizn"), ("@samples=0", "samples"), ("@method=beam", "method")],
)
def test_bad_planner_options_are_named(pendulum_model: Path, suffix: str, message: str) -> None:
    task = get_task("pendulum")
    with pytest.raises(PolicySpecError, match=message):
        load_policy(f"plan:{pendulum_model}{suffix}", task.observation_space, task.action_space)


def test_other_policies_refuse_planner_options() -> None:
    task = get_task("pendulum")
    with pytest.raises(PolicySpecError, match="horizon"):
        load_policy("random@horizon=3", task.observation_space, task.action_space)


def test_a_planner_of_another_task_is_refused(pendulum_model: Path) -> None:
    task = get_task("cartpole")
    with pytest.raises(PolicySpecError, match="space"):
        load_policy(f"plan:{pendulum_model}", task.observation_space, task.action_space)


def test_a_missing_model_is_named(tmp_path: Path) -> None:
    task = get_task("pendulum")
    with pytest.raises(PolicySpecError, match="model"):
        load_policy(f"plan:{tmp_path / 'nothing'}", task.observation_space, task.action_space)


class Constant:
    """A policy that always takes one action."""

    def __init__(self, action: float) -> None:
        self.action = action

    def act(self, observations: np.ndarray) -> np.ndarray:
        return np.full((len(observations), 1), self.action, dtype=np.float32)

    def reset(self, slots: np.ndarray) -> None:
        pass


def test_the_shield_stops_a_policy_walking_off_the_cliff_and_leaves_a_safe_one_alone() -> None:
    model = LineWorld("cliff")
    planner = Planner(model, PlannerConfig(horizon=10, samples=64, seed=0))
    reckless = ShieldPolicy(Constant(-1.0), planner, ShieldConfig(lookahead=3, particles=1))
    trace = run(reckless, model, [0.0, 3.0], steps=20)
    assert trace.min() >= CLIFF and reckless.interventions > 0
    assert trace[:2, 1].tolist() == [2.5, 2.0]  # far from the edge, the policy's own actions go through
    careful = ShieldPolicy(Constant(1.0), Planner(model, PlannerConfig(horizon=4, samples=16)))
    run(careful, model, [0.0], steps=10)
    assert (careful.interventions, careful.decisions) == (0, 10)


def test_the_shield_spec_wraps_any_policy_with_the_models_planner(pendulum_model: Path) -> None:
    task = get_task("pendulum", max_episode_steps=10)
    spec = f"shield:{pendulum_model}@lookahead=3,risk=0.2,particles=2,outside=0,horizon=3,samples=8:random@noise=0.1"
    policy = load_policy(spec, task.observation_space, task.action_space, seed=0)
    assert isinstance(policy, ShieldPolicy) and policy.known is None
    assert (policy.config.lookahead, policy.config.risk, policy.planner.config.horizon) == (3, 0.2, 3)
    real_rollouts(task, policy, episodes=2, seed=0)
    assert policy.decisions == 20
    for bad, message in [
        ("@lookahed=3", "lookahed"),
        ("@risk=1.5", "risk"),
        ("", "expected 'shield:MODEL_DIR"),
    ]:
        with pytest.raises(PolicySpecError, match=message):
            load_policy(
                f"shield:{pendulum_model}{bad}" + ("" if not bad else ":random"),
                task.observation_space,
                task.action_space,
            )


def test_the_planner_collects_ranks_and_films_from_the_command_line(
    pendulum_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imaginarium.cli import main
    from imaginarium.dataset import load_dataset

    plan = f"plan:{pendulum_model}@horizon=2,samples=8"
    data = tmp_path / "data"
    assert main(["collect", "--task", "pendulum", "--policy", plan, "--episodes", "2", "--max-episode-steps", "5"]
                + ["--num-envs", "2", "--out", str(data), "--no-progress"]) == 0  # fmt: skip
    assert load_dataset(data).num_steps == 10
    report = tmp_path / "report"
    assert main(["rank", "--model", str(pendulum_model), "--policies", plan, f"shield:{pendulum_model}:random"]
                + ["--report", str(report), "--workers", "0", "--starts", "2", "--horizon", "3", "--no-progress"]) == 0  # fmt: skip
    ranked = json.loads((report / "ranking.json").read_text())["policies"]
    assert sorted(entry["name"] for entry in ranked if entry["error"] is None) == sorted(
        ["plan:pendulum@horizon=2,samples=8", "shield:pendulum:random"]
    )
    by_name = {entry["name"]: entry for entry in ranked}
    assert "interventions" not in by_name["plan:pendulum@horizon=2,samples=8"]
    assert 0 <= by_name["shield:pendulum:random"]["interventions"] <= 1  # the report counts them
    assert (
        "Shields replaced the policy's action in shield:pendulum:random" in (report / "report.md").read_text()
    )
    clip = tmp_path / "clip.gif"
    assert main(["video", "--model", str(pendulum_model), "--policy", plan, "--out", str(clip), "--steps", "3"]
                + ["--size", "32"]) == 0  # fmt: skip
    assert clip.stat().st_size > 0


def test_futures_that_leave_the_data_are_not_trusted_and_leaving_is_no_way_out_of_costs() -> None:
    from imaginarium.models.starts import DataStarts

    model = LineWorld("goal")
    states = np.linspace(-1.0, 1.0, 50, dtype=np.float32)[:, None]  # the data never went past 1
    model.starts = DataStarts(states[:1], states, rewards=-((states[:, 0] - GOAL) ** 2))
    bold = Planner(model, PlannerConfig(horizon=8, samples=64, margin=float("inf"), seed=1))
    assert abs(run(bold, model, [0.0], steps=12)[-1, 0] - GOAL) < 0.15
    careful = Planner(model, PlannerConfig(horizon=8, samples=64, margin=0.0, seed=1))
    trace = run(careful, model, [0.0], steps=12)
    assert trace.max() <= 1.0 and trace[-1, 0] > 0.3  # toward the goal, never past the data


def test_the_tasks_own_termination_rule_can_end_futures_instead_of_the_continue_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imaginarium.rewards import termination

    class BlindToTheCliff(LineWorld):
        """The cliff, with a continue head that never saw anyone fall."""

        def step(self, state, actions, sample=True, *, uncertainty=True, generator=None, tiles=1):  # noqa: ANN001, ANN201
            out = super().step(
                state, actions, sample, uncertainty=uncertainty, generator=generator, tiles=tiles
            )
            out.continue_prob = torch.ones_like(out.continue_prob)
            return out

    monkeypatch.setitem(termination.TERMINATION_RULES, "Line-v0", lambda states: states[..., 0] < CLIFF)
    model = BlindToTheCliff("cliff")
    model.card = {"env_id": "Line-v0"}
    trusting = Planner(model, PlannerConfig(horizon=10, samples=128, value="none", seed=0))
    assert run(trusting, model, [0.0], steps=20).min() < CLIFF
    ruled = Planner(model, PlannerConfig(horizon=10, samples=128, value="none", termination="rule", seed=0))
    assert run(ruled, model, [0.0], steps=20).min() >= CLIFF
    with pytest.raises(ImaginariumError, match="termination=rule needs"):
        Planner(LineWorld(), PlannerConfig(termination="rule"))


def test_the_tasks_own_reward_rule_can_score_futures_instead_of_the_reward_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imaginarium.rewards import reward_rules

    class WrongReward(LineWorld):
        """The goal's dynamics, with a reward head that learned the goal on the wrong side."""

        def step(self, state, actions, sample=True, *, uncertainty=True, generator=None, tiles=1):  # noqa: ANN001, ANN201
            out = super().step(
                state, actions, sample, uncertainty=uncertainty, generator=generator, tiles=tiles
            )
            out.reward = -((out.state["observation"][:, 0] + GOAL) ** 2)
            return out

    def rule(before: np.ndarray, actions: np.ndarray, after: np.ndarray) -> np.ndarray:
        return -((after[:, 0] - GOAL) ** 2)

    monkeypatch.setitem(reward_rules.REWARD_RULES, "Line-v0", rule)
    model = WrongReward("goal")
    model.card = {"env_id": "Line-v0"}
    trusting = Planner(model, PlannerConfig(horizon=8, samples=64, value="none", seed=1))
    assert run(trusting, model, [0.0], steps=12)[-1, 0] < -GOAL + 0.3
    ruled = Planner(model, PlannerConfig(horizon=8, samples=64, value="none", reward="rule", seed=1))
    assert abs(run(ruled, model, [0.0], steps=12)[-1, 0] - GOAL) < 0.15
    with pytest.raises(ImaginariumError, match="reward=rule needs"):
        Planner(LineWorld(), PlannerConfig(reward="rule"))


def test_a_value_fitted_on_the_data_prefers_the_states_that_led_to_better_returns(
    pendulum_model: Path,
) -> None:
    from imaginarium.agents.planner import data_value
    from imaginarium.models import load_world_model

    model = load_world_model(pendulum_model)
    value = data_value(model, discount=0.9)
    upright, hanging = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[-1.0, 0.0, 0.0]])
    assert float(value(upright)) > float(value(hanging))
    assert data_value(model, discount=0.9) is value  # fitted once per dataset and discount
    task = get_task("pendulum", max_episode_steps=5)
    planner = load_policy(
        f"plan:{pendulum_model}@value=data,horizon=3,samples=8", task.observation_space, task.action_space
    )
    assert real_rollouts(task, planner, episodes=1, seed=0).length == 5


class Counting:
    """A stateful policy: it counts the steps each row has acted since its episode began."""

    def __init__(self) -> None:
        self.steps = np.zeros(0, dtype=int)

    def reset(self, slots: np.ndarray) -> None:
        if len(slots) and slots.max() >= len(self.steps):
            self.steps = np.concatenate([self.steps, np.zeros(slots.max() + 1 - len(self.steps), int)])
        self.steps[slots] = 0

    def act(self, observations: np.ndarray) -> np.ndarray:
        self.steps[: len(observations)] += 1
        return np.full((len(observations), 1), 0.2, dtype=np.float32)


def test_the_shield_imagines_with_a_copy_so_the_real_policys_state_stays_real() -> None:
    model = LineWorld("cliff")
    policy = Counting()
    shield = ShieldPolicy(
        policy, Planner(model, PlannerConfig(horizon=3, samples=8)), ShieldConfig(lookahead=4)
    )
    run(shield, model, [0.0, 1.0], steps=5)
    assert policy.steps[:2].tolist() == [5, 5] and len(policy.steps) == 2


def test_a_shield_wraps_a_mixture_and_a_mixture_holds_a_shield(pendulum_model: Path) -> None:
    task = get_task("pendulum")
    shielded = load_policy(
        f"shield:{pendulum_model}@horizon=2,samples=4:0.5*random + 0.5*random@noise=0.1",
        task.observation_space,
        task.action_space,
    )
    assert isinstance(shielded, ShieldPolicy) and isinstance(shielded.policy, MixturePolicy)
    mixed = load_policy(
        f"0.5*shield:{pendulum_model}@horizon=2,samples=4:random + 0.5*random",
        task.observation_space,
        task.action_space,
    )
    assert isinstance(mixed, MixturePolicy) and isinstance(mixed.components[0], ShieldPolicy)


def test_planning_never_gives_nan_even_when_futures_blow_up() -> None:
    from imaginarium.models.starts import DataStarts

    class BlowsUp(LineWorld):
        def step(self, state, actions, sample=True, *, uncertainty=True, generator=None, tiles=1):  # noqa: ANN001, ANN201
            out = super().step(
                state, actions, sample, uncertainty=uncertainty, generator=generator, tiles=tiles
            )
            out.state["observation"][::2] = float("inf")
            return out

    model = BlowsUp("goal")
    states = np.linspace(-1.0, 3.0, 50, dtype=np.float32)[:, None]
    model.starts = DataStarts(states[:1], states, rewards=-((states[:, 0] - GOAL) ** 2))
    for method, samples in (("mppi", 1), ("mppi", 16), ("cem", 16)):
        planner = Planner(model, PlannerConfig(method=method, samples=samples, elites=1, horizon=4))
        planner._value = lambda states: states[..., 0] * 0.0 + 1.0  # a value of any state, as fitted
        assert np.isfinite(planner.act(np.zeros((2, 1), np.float32))).all()


@pytest.mark.parametrize(
    ("errors", "options", "horizon"),
    [
        ({1: 0.006, 5: 0.001, 10: 0.05, 25: 0.26, 50: 195.0}, {}, 10),  # InvertedPendulum-v5's medium model
        ({1: 0.0, 5: 0.0, 10: 0.0, 25: 1e-4, 50: 1e-3}, {}, 25),  # right as far as it was checked
        ({1: 0.01, 5: 0.02, 10: 0.3, 25: 0.05, 50: 0.05}, {}, 5),  # the first step over the bound cuts
        ({1: 0.01, 5: 0.02, 10: 0.05, 25: 0.3, 50: 1.0}, {"horizon": 8}, 8),  # never beyond the horizon
        ({1: 0.01, 5: float("nan"), 10: 0.05}, {}, 1),  # an error that is not a number is not trusted
        ({1: 0.01, 5: 0.02, 10: 0.3}, {"max_nmse": 0.0}, 25),  # 0 plans the whole horizon
        ({1: 0.5, 5: 0.9}, {}, 25),  # a check that passes no step says nothing of how far to plan
        ({}, {}, 25),  # no check on the card
    ],
)
def test_futures_reach_only_as_far_as_the_models_held_out_check_found_it_right(
    errors: dict, options: dict, horizon: int
) -> None:
    model = LineWorld()
    model.card = {
        "fidelity": {f"nmse_at_{steps}": error for steps, error in errors.items()} | {"nmse_mean": 9.0}
    }
    planner = Planner(model, PlannerConfig(**options))
    assert planner.config.horizon == horizon
    planner.reset(np.arange(2))
    assert planner.act(np.zeros((2, 1), np.float32)).shape == (2, 1)
    assert planner._plan is not None and planner._plan.shape[1] == horizon


def test_the_planner_swings_the_real_pendulum_up_with_a_model_of_random_data(
    tmp_path: Path, tiny_ensemble
) -> None:
    from imaginarium.collect import collect
    from imaginarium.policy import RandomPolicy

    task = get_task("pendulum", max_episode_steps=100)
    collect(task, tmp_path / "data", episodes=40, seed=5, progress=False)
    model = tiny_ensemble(tmp_path / "data", tmp_path / "model", steps=1500)
    planner = load_policy(f"plan:{model}@horizon=20,samples=64", task.observation_space, task.action_space)
    planned = real_rollouts(task, planner, episodes=3, seed=0).return_["mean"]
    random = real_rollouts(task, RandomPolicy(task.action_space, seed=0), episodes=3, seed=0).return_["mean"]
    assert random < -400 and planned > -250  # upright by mid-episode (-82 here; the SAC expert: about -80)


def test_a_critic_trained_in_the_model_values_the_planners_last_imagined_states(
    pendulum_model: Path, tmp_path: Path
) -> None:
    from stable_baselines3 import SAC

    from imaginarium.agents.planner import AgentPrior, CriticValue
    from imaginarium.agents.sb3 import train_in_imagination
    from imaginarium.models import load_world_model

    agent = train_in_imagination(
        pendulum_model, "sac", 200, tmp_path / "sac", num_envs=4, algo_kwargs={"learning_starts": 100}
    )
    model = load_world_model(pendulum_model)
    value = CriticValue.load(agent, model)
    states = torch.as_tensor(model.starts.states[:16])
    sac = SAC.load(agent)  # the reference: SB3's own load of the whole agent
    with torch.no_grad():
        actions = sac.actor(states, deterministic=True)
        expected = torch.min(*sac.critic(states, actions)).squeeze(1)
        np.testing.assert_allclose(value(states).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    task = get_task("pendulum")
    planner = load_policy(f"plan:{pendulum_model}@horizon=2,samples=8,critic={agent}", task.observation_space,
                          task.action_space)  # fmt: skip
    assert isinstance(planner._value, CriticValue)
    assert real_rollouts(task, planner, 1, seed=0, max_episode_steps=5).length == 5
    with torch.no_grad():  # prior=agent proposes the agent's own actions, in the planner's unit box
        prior = AgentPrior(value)(states)
        np.testing.assert_allclose(
            prior.numpy(),
            sac.policy.scale_action(sac.predict(states.numpy(), deterministic=True)[0]),
            atol=1e-5,
        )
    guided = load_policy(f"plan:{pendulum_model}@horizon=2,samples=8,critic={agent},prior=agent,prior_share=0.5",
                         task.observation_space, task.action_space)  # fmt: skip
    assert real_rollouts(task, guided, 1, seed=0, max_episode_steps=5).length == 5
    with pytest.raises(ImaginariumError, match="give critic"):
        PlannerConfig(prior="agent")
    ppo = train_in_imagination(pendulum_model, "ppo", 64, tmp_path / "ppo", num_envs=2,
                               algo_kwargs={"n_steps": 32, "batch_size": 32})  # fmt: skip
    with pytest.raises(ImaginariumError, match="is a PPO agent; it needs SAC or TD3"):
        CriticValue.load(ppo, model)


class Toward:
    """A prior that always proposes the full step toward the goal from the left."""

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        return torch.ones((*states.shape[:-1], 1))


def test_a_prior_proposes_candidates_that_are_imagined_scored_and_followed() -> None:
    """Sampling around the plan alone with a narrow spread creeps toward the goal; the prior's
    proposals (imagined from the states they reach, scored with the rest) get there in time."""
    model = LineWorld("goal")
    narrow = PlannerConfig(horizon=6, samples=32, init_std=0.05, min_std=0.05, seed=0)
    alone = Planner(model, narrow)
    guided = Planner(model, PlannerConfig(**{**narrow.__dict__, "prior_std": 0.0}))
    guided._prior, guided._proposed = Toward(), 8
    assert np.abs(run(alone, model, [-3.0], steps=12) - GOAL).min() > 2.0
    assert np.abs(run(guided, model, [-3.0], steps=12) - GOAL).min() < 0.3


def test_the_data_prior_clones_the_behaviour_in_the_unit_box() -> None:
    from types import SimpleNamespace

    from imaginarium.agents.planner import _fit_prior

    rng = np.random.default_rng(0)
    states = rng.normal(size=(4000, 3)).astype(np.float32)
    actions = np.clip(-1.5 * states[:, 2:3], -2.0, 2.0)  # pendulum's torque box is [-2, 2]
    data = SimpleNamespace(observations=states, actions=actions, action_free=np.zeros(4000, dtype=bool))
    prior = _fit_prior(data, gym.spaces.Box(-2.0, 2.0, (1,), np.float32), steps=1500, seed=0)
    probe = torch.as_tensor(rng.normal(size=(256, 3)), dtype=torch.float32)
    expected = np.clip(-1.5 * probe[:, 2:3].numpy(), -2.0, 2.0) / 2.0
    assert np.abs(prior(probe).numpy() - expected).mean() < 0.05


def test_the_prior_spec_plans_on_a_model_of_data_and_is_refused_for_discrete_actions(
    pendulum_model: Path, cartpole_model: Path
) -> None:
    from imaginarium.agents.planner import data_prior
    from imaginarium.models import load_world_model

    task = get_task("pendulum", max_episode_steps=5)
    spec = f"plan:{pendulum_model}@prior=data,prior_share=0.5,prior_steps=200,horizon=3,samples=8"
    planner = load_policy(spec, task.observation_space, task.action_space)
    assert real_rollouts(task, planner, episodes=1, seed=0).length == 5
    model = load_world_model(pendulum_model)
    assert data_prior(model, 200) is data_prior(load_world_model(pendulum_model), 200)  # fitted once
    with pytest.raises(ImaginariumError, match="continuous actions"):
        Planner(load_world_model(cartpole_model), PlannerConfig(prior="data", prior_steps=10))
    with pytest.raises(ImaginariumError, match="prior"):
        PlannerConfig(prior="bc")
