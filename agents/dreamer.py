"""A Dreamer-style actor-critic that learns on imagined trajectories inside a world model.

Start states are real: windows of the dataset filtered through the model. From each, the actor
imagines ``horizon`` steps (15 by default) in the model; the critic learns λ-returns of the model's
rewards, discounted by its continue head, and the actor follows their advantages. The stabilisers
are DreamerV3's: returns scaled by the spread between their 5th and 95th percentiles (never scaled
up), a slow exponential-moving-average critic that regularises the critic, entropy regularisation,
a two-hot symlog critic, and gradient clipping. The model is frozen. For continuous actions the
actor by default follows the gradient of the λ-returns through the model's dynamics (DreamerV1/V2;
``actor_gradient="dynamics"``); for discrete actions it learns by REINFORCE with the advantages
(``"reinforce"``), which also works for continuous ones. Any model family works (the actor reads
``model.features``).

An agent folder holds the actor and critic (tensors only), ``dreamer.json`` (config, spaces, task,
progress) and a copy of the world model, so it acts on the real task on its own::

    train_dreamer("models/pendulum", "agents/dreamer", DreamerConfig(steps=3000))
    policy = DreamerPolicy("agents/dreamer")          # or the spec "dreamer:agents/dreamer"
    actions = policy.act(observations)
    score_dreamer("agents/dreamer", episodes=10).real  # its return on the real task
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from imaginarium.config import check_number, config_from_dict, config_to_dict
from imaginarium.dataset import Dataset, load_dataset
from imaginarium.envs.suite import get_task
from imaginarium.errors import ImaginariumError, TrainingError
from imaginarium.evaluation import Interval, real_rollouts
from imaginarium.models import WorldModel, load_world_model
from imaginarium.models.checkpoint import load_tensors, save_tensors
from imaginarium.models.starts import card_dataset_path, data_limits
from imaginarium.outputs import OutputError, atomic_write_bytes, check_writable
from imaginarium.policy import mark_slots
from imaginarium.progress import Progress, tracking
from imaginarium.rewards.heads import TwoHotRewardHead, mlp
from imaginarium.samplers import SequenceSampler

AGENT_FILE = "dreamer.json"
WEIGHTS_FILE = "agent.pt"
STATE_FILE = "training_state.pt"


@dataclass(frozen=True)
class DreamerConfig:
    """Hyperparameters of the actor-critic (defaults after DreamerV3, sized for a CPU)."""

    horizon: int = 15
    batch_size: int = 256
    context: int = 8
    gamma: float = 0.99
    lambda_: float = 0.95
    hidden: int = 256
    layers: int = 2
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    entropy: float = 3e-4
    slow_critic_decay: float = 0.98
    slow_critic_weight: float = 1.0
    return_decay: float = 0.99
    min_std: float = 0.1
    max_std: float = 1.0
    unimix: float = 0.01
    grad_clip: float = 100.0
    uncertainty_penalty: float = 0.0
    actor_gradient: str = "auto"
    steps: int = 3000
    log_every: int = 100
    checkpoint_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse settings that mean nothing (a zero horizon, a negative learning rate, a discount
        outside (0, 1]) where the config is built, not as a torch error or a silent bad agent later."""
        where = "dreamer config"
        for name in ("horizon", "context", "hidden", "steps", "log_every", "checkpoint_every"):
            check_number(getattr(self, name), name, at_least=1, integer=True, where=where)
        check_number(self.batch_size, "batch_size", at_least=2, integer=True, where=where)
        check_number(self.layers, "layers", at_least=0, integer=True, where=where)
        check_number(self.seed, "seed", at_least=0, integer=True, where=where)
        check_number(self.gamma, "gamma", above=0, at_most=1, where=where)
        for name in ("lambda_", "slow_critic_decay", "return_decay"):
            check_number(getattr(self, name), name, at_least=0, at_most=1, where=where)
        for name in ("actor_lr", "critic_lr", "min_std"):
            check_number(getattr(self, name), name, above=0, where=where)
        check_number(self.max_std, "max_std", where=where)
        if self.max_std < self.min_std:
            raise ImaginariumError(
                f"{where}: 'max_std' must be at least min_std ({self.min_std}), got {self.max_std}"
            )
        for name in ("entropy", "slow_critic_weight", "uncertainty_penalty"):
            check_number(getattr(self, name), name, at_least=0, where=where)
        check_number(self.unimix, "unimix", at_least=0, below=1, where=where)
        check_number(self.grad_clip, "grad_clip", above=0, allow_inf=True, where=where)


class Actor(nn.Module):
    """Maps model features to an action distribution: a bounded normal for boxes (mean squashed by
    tanh, std in ``[min_std, max_std]``, samples clipped to ``[-1, 1]``) or a categorical mixed with
    a little uniform probability."""

    def __init__(self, features: int, action_space: gym.Space, config: DreamerConfig) -> None:
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.size = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.net = mlp(features, config.hidden, config.layers, self.size if self.discrete else 2 * self.size)
        self.min_std, self.max_std, self.unimix = config.min_std, config.max_std, config.unimix

    def distribution(self, features: torch.Tensor) -> torch.distributions.Distribution:
        output = self.net(features)
        if self.discrete:
            probs = torch.softmax(output, -1) * (1 - self.unimix) + self.unimix / self.size
            return torch.distributions.Categorical(probs=probs)
        mean, std = output.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), std), 1)

    def act(self, features: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions in ``[-1, 1]`` (boxes) or indices (discrete)."""
        distribution = self.distribution(features)
        if deterministic:
            if self.discrete:
                return distribution.probs.argmax(-1)
            return distribution.mean
        sample = distribution.sample()
        return sample if self.discrete else sample.clamp(-1.0, 1.0)


class Critic(TwoHotRewardHead):
    """Expected λ-return as a two-hot distribution over bins in symlog space (DreamerV3): the same head
    as the models' reward, reading agent features."""

    def __init__(self, features: int, config: DreamerConfig) -> None:
        super().__init__(features, config.hidden, config.layers)


def feature_size(model: WorldModel) -> int:
    """Length of ``model.features`` vectors."""
    observation = torch.zeros(1, *model.input_space.shape, device=model.device)
    with torch.no_grad():
        return int(model.features(model.initial_state(observation)).shape[-1])


def env_actions(actions: torch.Tensor, action_space: gym.Space) -> torch.Tensor:
    """Actor outputs as the action space takes them: box actions scaled from ``[-1, 1]`` to the box."""
    if isinstance(action_space, gym.spaces.Discrete):
        return actions + int(action_space.start)
    low = torch.as_tensor(
        np.where(np.isfinite(action_space.low), action_space.low, -1.0), dtype=torch.float32
    )
    high = torch.as_tensor(
        np.where(np.isfinite(action_space.high), action_space.high, 1.0), dtype=torch.float32
    )
    low, high = low.to(actions.device), high.to(actions.device)
    return (low + (actions.reshape(-1, *action_space.shape) + 1.0) * 0.5 * (high - low)).float()


def lambda_returns(
    rewards: torch.Tensor, continues: torch.Tensor, values: torch.Tensor, gamma: float, lambda_: float
) -> torch.Tensor:
    """λ-returns ``(H, B)`` from rewards and continue probabilities ``(H, B)`` and values ``(H + 1, B)``:
    ``R_t = r_t + γ c_t ((1 − λ) v_{t+1} + λ R_{t+1})`` with ``R_H = v_H``."""
    returns = torch.empty_like(rewards)
    following = values[-1]
    for t in reversed(range(rewards.shape[0])):
        following = rewards[t] + gamma * continues[t] * ((1 - lambda_) * values[t + 1] + lambda_ * following)
        returns[t] = following
    return returns


class DreamerLearner:
    """The actor, the critics and their optimisers, learning inside a frozen ``model``."""

    def __init__(self, model: WorldModel, config: DreamerConfig) -> None:
        if config.actor_gradient not in ("auto", "dynamics", "reinforce"):
            raise ImaginariumError(
                f"actor_gradient must be auto, dynamics or reinforce, got {config.actor_gradient!r}"
            )
        if config.actor_gradient == "dynamics" and model.discrete:
            raise ImaginariumError("actor_gradient 'dynamics' needs continuous actions; use reinforce")
        self.use_model(model)
        self.config = config
        device = model.device
        features = feature_size(model)
        self.actor = Actor(features, model.action_space, config).to(device)
        self.critic = Critic(features, config).to(device)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, eps=1e-5)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, eps=1e-5)
        self.return_range = torch.zeros(2, device=device)  # EMA of the 5th and 95th percentiles
        self.updates = 0

    @property
    def backprop(self) -> bool:
        """Whether the actor learns through the model's dynamics (continuous actions, by default)."""
        if self.config.actor_gradient == "auto":
            return not self.actor.discrete
        return self.config.actor_gradient == "dynamics"

    def imagine(
        self, state: dict[str, torch.Tensor], differentiable: bool = False
    ) -> dict[str, torch.Tensor]:
        """``horizon`` imagined steps from ``state`` with the actor's sampled actions.

        :param differentiable: keep the graph from the actor's parameters through the model's steps
            (reparameterised samples; clipping passes gradients straight through).
        """
        penalty = self.config.uncertainty_penalty
        with torch.set_grad_enabled(differentiable):
            features, actions, rewards, continues = [self.model.features(state)], [], [], []
            for _ in range(self.config.horizon):
                if differentiable:
                    raw = self.actor.distribution(features[-1]).rsample()
                    action = raw + (raw.clamp(-1.0, 1.0) - raw).detach()
                else:
                    action = self.actor.act(features[-1])
                out = self.model.step(
                    state, env_actions(action, self.model.action_space), sample=True, uncertainty=penalty > 0
                )
                reward = out.reward if penalty == 0 else out.reward - penalty * out.uncertainty
                going_on = out.continue_prob
                if self.limits is not None:  # a diverged state ends its trajectory, and stays where it was
                    within = self.limits.within(self.model.decode(out.state).detach(), out.reward.detach())
                    reward = torch.where(within, reward, torch.zeros_like(reward))
                    going_on = going_on * within
                    out.state = {
                        key: torch.where(within.view(-1, *[1] * (value.dim() - 1)), value, state[key])
                        for key, value in out.state.items()
                    }
                state = out.state
                features.append(self.model.features(state))
                actions.append(action)
                rewards.append(reward)
                continues.append(going_on)
            return {
                "features": torch.stack(features),
                "actions": torch.stack(actions),
                "rewards": torch.stack(rewards),
                "continues": torch.stack(continues),
            }

    def update(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        """One actor and critic update on trajectories imagined from ``state``; returns figures to log.

        :raises TrainingError: a loss that is not finite (nothing is updated then).
        """
        config = self.config
        backprop = self.backprop
        trajectory = self.imagine(state, differentiable=backprop)
        features, actions = trajectory["features"], trajectory["actions"]
        rewards, continues = trajectory["rewards"], trajectory["continues"]
        values = self.critic.mean(features) if backprop else None
        with torch.no_grad():
            if values is None:
                values = self.critic.mean(features)
            returns = lambda_returns(rewards, continues, values, config.gamma, config.lambda_)
            alive = torch.cat([torch.ones_like(continues[:1]), continues[:-1]])
            weights = torch.cumprod(config.gamma * alive, 0) / config.gamma
            low, high = torch.quantile(returns.flatten(), torch.tensor([0.05, 0.95], device=returns.device))
            decay = config.return_decay if self.updates else 0.0
            self.return_range = decay * self.return_range + (1 - decay) * torch.stack([low, high])
            scale = torch.clamp(self.return_range[1] - self.return_range[0], min=1.0)
            advantages = (returns - values[:-1]) / scale
            slow_targets = self.slow_critic.mean(features[:-1].detach())
        distribution = self.actor.distribution(features[:-1].detach())
        entropy = distribution.entropy()
        if backprop:  # the λ-returns themselves, differentiated through the imagined dynamics
            differentiable_returns = lambda_returns(rewards, continues, values, config.gamma, config.lambda_)
            objective = differentiable_returns / scale
        else:  # REINFORCE with the advantages
            objective = distribution.log_prob(actions.detach()) * advantages
        actor_loss = -(weights * (objective + config.entropy * entropy)).mean()
        critic_features = features[:-1].detach()
        critic_loss = (
            weights
            * (
                self.critic.nll(critic_features, returns)
                + config.slow_critic_weight * self.critic.nll(critic_features, slow_targets)
            )
        ).mean()
        if not (torch.isfinite(actor_loss) and torch.isfinite(critic_loss)):
            raise TrainingError(
                f"non-finite loss at update {self.updates + 1} (actor {float(actor_loss.detach())}, critic "
                f"{float(critic_loss.detach())})"
            )
        for optimizer, loss, module in (
            (self.actor_optimizer, actor_loss, self.actor),
            (self.critic_optimizer, critic_loss, self.critic),
        ):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
            if not torch.isfinite(norm):  # a model giving NaN: where() masks it, its gradient does not
                optimizer.zero_grad(set_to_none=True)
                raise TrainingError(
                    f"non-finite gradients at update {self.updates + 1}: the world model gives values that "
                    "are not finite in imagination; retrain the model (or try a shorter horizon)"
                )
            optimizer.step()
        with torch.no_grad():
            for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
                slow.lerp_(fast, 1 - config.slow_critic_decay)
        self.updates += 1
        return {
            "actor_loss": float(actor_loss.detach()),
            "critic_loss": float(critic_loss.detach()),
            "imagined_return": float(returns[0].detach().mean()),
            "imagined_reward": float(rewards.detach().mean()),
            "entropy": float(entropy.detach().mean()),
            "return_scale": float(scale),
        }

    def use_model(self, model: WorldModel) -> None:
        """Go on learning inside a refitted model (the online loop), frozen like the first."""
        self.model = model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.limits = data_limits(model)  # where its imagined trajectories diverge

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "slow_critic": self.slow_critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "return_range": self.return_range,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.slow_critic.load_state_dict(state["slow_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.return_range = state["return_range"]
        self.updates = int(state["updates"])


def start_sampler(model: WorldModel, dataset: Dataset, config: DreamerConfig) -> SequenceSampler:
    """Windows of real history to filter into start states (one step for models without memory)."""
    context = config.context if model.family == "rssm" else 1
    model.check_frames(dataset)
    return SequenceSampler.capped(
        dataset, config.batch_size, context, model.device, config.seed, True, model.observes_pixels
    )


def start_states(model: WorldModel, sampler: SequenceSampler) -> dict[str, torch.Tensor]:
    """Real windows filtered through the model: the state after each window's last observation."""
    batch = sampler.sample()
    with torch.no_grad():
        return model.observe(batch.observations, batch.actions[:, :-1])


def save_agent(learner: DreamerLearner, directory: Path, info: dict[str, Any]) -> None:
    """The actor and critic (tensors only) and ``dreamer.json``; the model copy is written once."""
    save_tensors(
        directory / WEIGHTS_FILE, {"actor": learner.actor.state_dict(), "critic": learner.critic.state_dict()}
    )
    text = json.dumps({"config": config_to_dict(learner.config), **info}, indent=2)
    atomic_write_bytes(directory / AGENT_FILE, lambda handle: handle.write(text.encode()))


@dataclass(frozen=True)
class DreamerSummary:
    """What a spell of Dreamer training did.

    :param resumed_from: the updates done before this spell (0 from scratch).
    :param last: the figures of the last update (losses, ``imagined_return``, and ``real_return`` when
        evaluated).
    :param directory: the agent folder.
    """

    updates: int
    resumed_from: int
    seconds: float
    last: dict[str, float]
    directory: str


def train_dreamer(
    model: str | Path,
    out: str | Path,
    config: DreamerConfig | dict[str, Any] | None = None,
    dataset: str | Path | Dataset | None = None,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    evaluate: Callable[[DreamerLearner], float] | None = None,
) -> DreamerSummary:
    """Learn an actor-critic inside the model at ``model`` (offline: its dataset and the model alone).

    :param dataset: where start states come from (default: the model's own dataset).
    :param resume: continue from ``out``'s last checkpoint (losing at most ``checkpoint_every`` updates).
    :param evaluate: called every ``log_every`` updates with the learner; its figure is logged as
        ``real_return`` (e.g. a few real episodes).
    :returns: a summary: updates done, seconds, last figures.
    :raises TrainingError: a non-finite loss (the last good checkpoint stays in ``out``).
    """
    if not isinstance(config, DreamerConfig):
        config = config_from_dict(DreamerConfig, config or {}, where="dreamer config")
    out = check_agent_folder(Path(out), resume or overwrite)
    torch.manual_seed(config.seed)
    world_model = load_world_model(model, device=device)
    source = dataset or card_dataset_path(world_model)
    if source is None:
        raise ImaginariumError("the model card names no dataset; give dataset= for the start states")
    data = source if isinstance(source, Dataset) else load_dataset(source)
    learner = DreamerLearner(world_model, config)
    if resume:
        if not (out / STATE_FILE).is_file():
            raise ImaginariumError(f"nothing to resume in {str(out)!r}: no {STATE_FILE}")
        saved = load_tensors(out / STATE_FILE, device)
        learner.load_state_dict(saved["learner"])
        torch.set_rng_state(saved["torch_rng"].cpu())
    else:
        if overwrite:  # only now: a failure above keeps the agent that was there
            shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        _copy_model(Path(model), out / "model")
    sampler = start_sampler(world_model, data, config)
    card = getattr(world_model, "card", {}) or {}
    info = {"task": card.get("task"), "env_id": card.get("env_id"), "model_family": world_model.family}
    return learn(learner, sampler, out, info, progress, evaluate)


def check_agent_folder(out: Path, replace: bool) -> Path:
    """``out`` if an agent can be written there: a folder that can be written, empty unless ``replace``.

    :raises OutputError: a file in the way, an agent already there, or a folder that cannot be written.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"{str(out)!r} is a file, not a folder to write an agent into")
    if out.is_dir() and any(out.iterdir()) and not replace:
        raise OutputError(f"{str(out)!r} already holds an agent; pass --resume or --overwrite")
    check_writable(out)
    return out


def _copy_model(source: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "model_card.json", "fidelity.json", "fidelity.png"):
        if (source / name).is_file():
            shutil.copy2(source / name, destination / name)


def learn(
    learner: DreamerLearner,
    sampler: SequenceSampler,
    out: Path,
    info: dict[str, Any],
    progress: bool | Progress,
    evaluate: Callable[[DreamerLearner], float] | None,
    total: int | None = None,
) -> DreamerSummary:
    """Update until ``total`` (default ``config.steps``) updates, logging, evaluating and checkpointing."""
    from torch.utils.tensorboard import SummaryWriter

    config = learner.config
    total = total or config.steps
    started, resumed_from = time.perf_counter(), learner.updates
    figures: dict[str, float] = {}
    with (
        SummaryWriter(str(out / "tb")) as board,
        tracking(progress, "dreamer", total, learner.updates) as bar,
    ):
        note = None
        while learner.updates < total:
            figures = learner.update(start_states(learner.model, sampler))
            step = learner.updates
            if step % config.log_every == 0 or step == total:
                if evaluate is not None:
                    figures["real_return"] = float(evaluate(learner))
                for key, value in figures.items():
                    board.add_scalar(f"dreamer/{key}", value, step)
                note = f"imagined {figures['imagined_return']:.1f}"
                if "real_return" in figures:
                    note += f"  real {figures['real_return']:.1f}"
            if step % config.checkpoint_every == 0 or step == total:
                _checkpoint(learner, out, {**info, "updates": step})
            bar.update(step, note)
    return DreamerSummary(
        updates=learner.updates,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - started,
        last=figures,
        directory=str(out),
    )


def _checkpoint(learner: DreamerLearner, out: Path, info: dict[str, Any]) -> None:
    save_agent(learner, out, info)
    save_tensors(out / STATE_FILE, {"learner": learner.state_dict(), "torch_rng": torch.get_rng_state()})


class DreamerPolicy:
    """A trained Dreamer actor acting on real observations, filtered through the agent's model copy.

    :param deterministic: act with the distribution's mode (mean for boxes), as evaluation does.
    """

    def __init__(self, directory: str | Path, deterministic: bool = True, device: str = "cpu") -> None:
        directory = Path(directory)
        if not (directory / AGENT_FILE).is_file():
            raise ImaginariumError(f"{str(directory)!r} is not a Dreamer agent folder (no {AGENT_FILE})")
        meta = json.loads((directory / AGENT_FILE).read_text())
        self.config = config_from_dict(DreamerConfig, meta["config"], where=str(directory / AGENT_FILE))
        self.model = load_world_model(directory / "model", device=device).eval()
        weights = load_tensors(directory / WEIGHTS_FILE, device)
        self.actor = Actor(feature_size(self.model), self.model.action_space, self.config).to(device)
        self.actor.load_state_dict(weights["actor"])
        self.actor.eval()
        self.observation_space = self.model.input_space
        self.action_space = self.model.action_space
        #: the frame size the agent sees on the real task, when its model learned from frames
        self.pixels = self.observation_space.shape[0] if self.model.observes_pixels else None
        self.deterministic = deterministic
        self._state: dict[str, torch.Tensor] | None = None
        self._last_actions: torch.Tensor | None = None
        self._fresh: np.ndarray | None = None

    def reset(self, slots: np.ndarray) -> None:
        """Forget the history of the batch rows ``slots``: their next observation starts a new state."""
        self._fresh = mark_slots(self._fresh, slots)

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        observed = torch.as_tensor(np.asarray(observations), dtype=torch.float32, device=self.model.device)
        count = len(observed)
        if self._state is None or self._last_actions is None or len(self._last_actions) != count:
            self._state = self.model.initial_state(observed)
        else:
            self._state = self.model.update(self._state, self._last_actions, observed)
            if self._fresh is not None and self._fresh[:count].any():
                rows = torch.as_tensor(np.flatnonzero(self._fresh[:count]), device=self.model.device)
                fresh = self.model.initial_state(observed[rows])
                self._state = {
                    key: value.index_copy(0, rows, fresh[key]) for key, value in self._state.items()
                }
        self._fresh = np.zeros(count, dtype=bool)
        actions = env_actions(
            self.actor.act(self.model.features(self._state), self.deterministic), self.action_space
        )
        self._last_actions = actions
        return actions.cpu().numpy()


@dataclass(frozen=True)
class DreamerScore:
    """A Dreamer agent's return on the real task its model learned (deterministic actions).

    :param real: None when the agent's ``dreamer.json`` names no task to check against.
    """

    task: str | None
    episodes: int
    real: Interval | None


def score_dreamer(agent: str | Path, episodes: int = 10, seed: int = 10_000) -> DreamerScore:
    """Run ``episodes`` real episodes of the agent in ``agent`` on the task named in its ``dreamer.json``.

    :param seed: seeds the episodes' resets; the default keeps them apart from the seeds data is
        collected with.
    :raises ImaginariumError: ``agent`` is not a Dreamer agent folder.
    """
    policy = DreamerPolicy(agent)
    task = json.loads((Path(agent) / AGENT_FILE).read_text()).get("task")
    if not task:
        return DreamerScore(task=None, episodes=episodes, real=None)
    real = real_rollouts(get_task(task), policy, episodes, seed=seed).return_
    return DreamerScore(task=task, episodes=episodes, real=real)
