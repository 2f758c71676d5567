"""Rolling policies out inside a world model and on the real task, with the uncertainty of each figure.

An imagined return estimates the real one: rollouts start from real initial states of the dataset,
run until the model ends the episode or the task's time limit, and sum undiscounted reward. Episode
ends are taken in expectation (each reward weighted by the probability that the episode is still
running, from the continue head), which removes the noise of sampling them. With an ensemble every
start is rolled once per elite, each rollout pinned to its elite, so the spread of returns across
members says how much the model itself is unsure of the estimate::

    result = imagined_rollouts(model, policy, starts, horizon=200, seed=0)  # an ImaginedRollouts
    result.return_          # {"mean", "ci_low", "ci_high"}: bootstrap 95% CI over start states
    result.member_spread    # std of the mean return across ensemble members (None for one member)
    real = real_rollouts(task, policy, episodes=20, seed=0)  # an EpisodeRollouts
    real.return_, real.lengths, real.terminated
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from imaginarium.dataset import Dataset
from imaginarium.envs.imagined import check_actions, model_success_rule, success_source
from imaginarium.envs.suite import INFO_SUCCESS_KEYS, Task
from imaginarium.errors import ImaginariumError
from imaginarium.models import WorldModel
from imaginarium.models.base import spread
from imaginarium.models.starts import data_limits
from imaginarium.policy import Policy
from imaginarium.rewards.reward_rules import task_rule
from imaginarium.rewards.success import SuccessJudge

#: a figure as every evaluation reports it: ``{"mean", "ci_low", "ci_high"}``, a bootstrap 95% interval
Interval = dict[str, float]


@dataclass(frozen=True)
class EpisodeRollouts:
    """What whole episodes of a policy gave (:func:`episode_rollouts`, :func:`real_rollouts`): real
    envs, or imagined ones stepped as envs.

    The return is ``return_`` (``return`` is a Python keyword); :meth:`to_json` names it ``return``.
    """

    #: mean undiscounted return with a bootstrap 95% CI over episodes
    return_: Interval
    per_episode: list[float]
    #: fraction of episodes whose last step succeeds; None when neither the task nor ``info`` says
    success: float | None
    #: mean steps per episode
    length: float
    #: steps of each episode
    lengths: list[int]
    #: whether each episode ended by termination (``terminated``), not by truncation or a time limit
    terminated: list[bool]
    #: each episode's states ``(T + 1, D)``, its first observation first (``keep_states=True`` only)
    states: list[np.ndarray] | None = None
    #: ``(episodes, *obs_shape)`` each episode's first observation, what it started from
    starts: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """Every field but the states as JSON, the return under ``return``."""
        values = asdict(self)
        values.pop("states")
        values.pop("starts")
        return _with_return_key(values)


@dataclass(frozen=True)
class ImaginedRollouts:
    """What rolling a policy from real start states in a world model gave (:func:`imagined_rollouts`).

    The return is ``return_`` (``return`` is a Python keyword); :meth:`to_json` names it ``return``.
    """

    #: bootstrap CI over starts of the member-averaged return
    return_: Interval
    #: return of each start, averaged over members
    per_start: list[float]
    #: mean return of each ensemble member (one entry for one member)
    member_returns: list[float]
    #: std of ``member_returns``; None for one member
    member_spread: float | None
    #: probability that the episode ends in success
    success: float
    #: mean per-step disagreement of the members' rollouts of a start about its state, in feature units
    #: (the family's own uncertainty with one member); None when not measured
    uncertainty: float | None
    #: share of imagined states outside the model's data; None when no known states were given
    outside_fraction: float | None
    #: expected steps of an episode
    length: float
    #: rollouts that diverged: a state or reward not finite, or past the data's limits (``DataLimits``)
    diverged: int
    #: the most steps a rollout ran
    horizon: int
    #: what decided ``success``: ``rule:<name>``, the real task's rule applied to the decoded imagined
    #: states, or ``head``, the model's success head at the episode's last step
    success_source: str = "head"

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON, the return under ``return``."""
        return _with_return_key(asdict(self))


def _with_return_key(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with ``return_`` renamed ``return``, kept first."""
    return {"return": fields.pop("return_"), **fields}


def bootstrap_interval(values: np.ndarray, seed: int = 0, resamples: int = 2000) -> Interval:
    """Mean of ``values`` with a percentile-bootstrap 95% confidence interval.

    The resampling is written out (what ``scipy.stats.bootstrap(method="percentile")`` does) because
    every Ray worker of a ranking computes intervals, and importing ``scipy.stats`` there cost 0.7 s
    of each worker's start.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    mean = float(values.mean())
    if len(values) < 2 or np.ptp(values) == 0:
        return {"mean": mean, "ci_low": mean, "ci_high": mean}
    rng, count = np.random.default_rng(seed), len(values)
    per_draw = max(1, 1_000_000 // count)  # resamples drawn at once, a million indices at most
    means = np.concatenate(
        [
            values[rng.integers(0, count, size=(min(per_draw, resamples - done), count))].mean(axis=1)
            for done in range(0, resamples, per_draw)
        ]
    )
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": mean, "ci_low": float(low), "ci_high": float(high)}


def start_states(initial_observations: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` real initial states: drawn without replacement while there are enough, then with."""
    rng = np.random.default_rng(seed)
    available = len(initial_observations)
    if available == 0:
        raise ImaginariumError("the dataset has no episodes to take start states from")
    indices = rng.choice(available, size=count, replace=count > available)
    return initial_observations[indices]


def _disagreement(model: WorldModel, out: Any, members: int, count: int, tiles: int = 1) -> torch.Tensor:
    """Per row: how far the members' rollouts of the same start disagree about the state (the norm of
    their std in feature units), or the family's own uncertainty when there is one member. The batch
    is ``tiles`` blocks of ``members × count`` rows."""
    if members == 1:
        return out.uncertainty
    features = model.features(out.state).reshape(tiles, members, count, -1)
    disagreement = spread(torch.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0), 1)
    return disagreement[:, None].expand(tiles, members, count).reshape(-1)


def _replace_rows(state: dict[str, torch.Tensor], rows: torch.Tensor, other: dict[str, torch.Tensor]):
    """``state`` with the rows where ``rows`` is true taken from ``other``."""
    if not bool(rows.any()):
        return state
    return {
        key: torch.where(rows.view(-1, *([1] * (value.dim() - 1))), other[key], value)
        for key, value in state.items()
    }


class KnownStates:
    """What the model knows, as states: a sample of its data's observations, and how far real states it
    has not seen lie from them (the 99th percentile of held-out nearest-neighbour distances, in units
    of each dimension's std). An imagined state farther than that is outside the data."""

    def __init__(self, observations: np.ndarray, samples: int = 8_192, quantile: float = 0.99, seed: int = 0):
        rng = np.random.default_rng(seed)
        observations = np.asarray(observations, dtype=np.float32)
        if len(observations) < 20:
            raise ImaginariumError(f"too few data states ({len(observations)}) to tell what the model knows")
        order = rng.permutation(len(observations))
        split = min(2_000, len(observations) // 10)
        held_out, reference = order[:split], order[split : split + samples]
        self.mean = observations.mean(0)
        self.std = observations.std(0) + 1e-6
        self.reference = torch.as_tensor((observations[reference] - self.mean) / self.std)
        self._reference_t = -2.0 * self.reference.T.contiguous()
        self._reference_sq = (self.reference * self.reference).sum(1)
        distances = self.distances(torch.as_tensor(observations[held_out]))
        self.threshold = float(torch.quantile(distances, quantile))

    def distances(self, states: torch.Tensor) -> torch.Tensor:
        """Distance of each state ``(N, D)`` to its nearest data state, in std units.

        Squared distances come from one matmul per chunk (``|r|² - 2 s·r``, then ``+ |s|²`` after the
        minimum), so only the nearest one per state is square-rooted. Chunks of 128 states keep each
        product at 4 MB: a larger one is a fresh mapping of memory every call, and faulting its pages
        in cost five times the arithmetic."""
        scaled = (states.float().cpu() - torch.as_tensor(self.mean)) / torch.as_tensor(self.std)
        scaled = torch.nan_to_num(scaled, nan=1e6, posinf=1e6, neginf=-1e6)
        nearest = [
            torch.addmm(self._reference_sq, chunk, self._reference_t).amin(1) + (chunk * chunk).sum(1)
            for chunk in scaled.split(128)
        ]
        return torch.cat(nearest).clamp_min(0).sqrt()

    def outside_fraction(self, states: torch.Tensor, seed: int = 0, samples: int = 1_024) -> float:
        """Share of ``states`` (a random sample of at most ``samples``: a standard error under 1.6%)
        outside the data."""
        if len(states) == 0:
            return 0.0
        pick = torch.randperm(len(states), generator=torch.Generator().manual_seed(seed))[:samples]
        return float((self.distances(states[pick]) > self.threshold).float().mean())


def _check_policy_actions(space: gym.Space, actions: Any, count: int) -> np.ndarray:
    """The policy's actions as the model takes them, or an error that says the policy is at fault."""
    try:
        return check_actions(space, actions, count)
    except ValueError as error:
        raise ImaginariumError(f"the policy returned bad actions: {error}") from None


#: how a ranking rolls an ensemble: every member from each start, or one drawn each step
MEMBER_MODES = ("each", "one")


def check_members(members: str) -> None:
    """:raises ImaginariumError: ``members`` is not one of :data:`MEMBER_MODES`."""
    if members not in MEMBER_MODES:
        raise ImaginariumError(f"members must be 'each' or 'one', got {members!r}")


def imagined_rollouts(
    model: WorldModel,
    policy: Policy,
    starts: np.ndarray,
    horizon: int,
    seed: int = 0,
    termination: bool = True,
    known_states: KnownStates | None = None,
    members: str = "each",
    rules: bool = False,
) -> ImaginedRollouts:
    """Roll ``policy`` from each of ``starts`` ``(K, D)`` for up to ``horizon`` steps in ``model``.

    :param termination: weight rewards by the continue head (``False``: run every step of ``horizon``).
    :param rules: where the task's own termination and reward rules are known
        (:func:`task_rules`), they judge the imagined states instead of the continue and reward heads.
    :param members: ``"each"`` rolls every start once per member of an ensemble (pinned), so their
        spread is measured; ``"one"`` rolls every start once, each step drawing one member (a
        ``1/members`` of the work, for screening many policies; no spread or uncertainty then).
    :param known_states: the states of the model's data; ``outside_fraction`` is then the share of
        imagined states (a sample of them) farther from every data state than real held-out states are.
    :returns: the figures of :class:`ImaginedRollouts`.
    :raises: whatever the policy raises, and :class:`ImaginariumError` for bad actions.
    """
    (result,) = imagined_rollouts_lockstep(
        model, [policy], starts, horizon, seed, termination, known_states, members, rules
    )
    if isinstance(result, Exception):
        raise result
    return result


@torch.inference_mode()
def imagined_rollouts_lockstep(
    model: WorldModel,
    policies: Sequence[Policy],
    starts: np.ndarray,
    horizon: int,
    seed: int = 0,
    termination: bool = True,
    known_states: KnownStates | None = None,
    members: str = "each",
    rules: bool = False,
) -> list[ImaginedRollouts | Exception]:
    """:func:`imagined_rollouts` of several policies at once: one model call per step for all of them.

    Each policy has a block of the batch, and the blocks share the model's random draws (``tiles``),
    so every policy meets the same noise it would alone: its result is the one
    :func:`imagined_rollouts` gives it (up to the last millionth of probability that a finished
    block still carries), and policies are compared on common random numbers. A policy that raises
    or returns bad actions is given back as its exception while the others go on.
    """
    check_members(members)
    if not policies:
        return []
    device = model.device
    each = members == "each"
    members = model.rollout_members if each else 1
    measured = each or model.rollout_members == 1  # one member of an ensemble measures no uncertainty
    count, tiles = len(starts), len(policies)
    block = members * count
    batch = tiles * block
    repeated = np.repeat(starts[None], members, 0).reshape(block, *starts.shape[1:])
    state = model.initial_state(torch.as_tensor(repeated, device=device).float())
    if members > 1:
        state = model.pin_members(state, torch.arange(members, device=device).repeat_interleave(count))
    state = {key: value.repeat(tiles, *[1] * (value.dim() - 1)) for key, value in state.items()}
    initial = state
    limits = data_limits(model)
    generator = torch.Generator(device).manual_seed(seed)
    alive = torch.ones(batch, device=device)
    returns = torch.zeros(batch, dtype=torch.float64, device=device)
    success = torch.zeros(batch, device=device)
    uncertainty = torch.zeros(batch, device=device)
    length = torch.zeros(batch, device=device)
    watched = torch.randperm(block, generator=torch.Generator().manual_seed(seed))[:256].to(device)
    watched = (watched[None] + block * torch.arange(tiles, device=device)[:, None]).reshape(-1)
    visited: list[tuple[torch.Tensor, torch.Tensor]] = []
    diverged = torch.zeros(batch, dtype=torch.bool, device=device)
    errors: list[Exception | None] = [None] * tiles
    blocks = [slice(index * block, (index + 1) * block) for index in range(tiles)]
    for index, policy in enumerate(policies):
        try:
            policy.reset(np.arange(block))
        except Exception as error:  # a user's policy can fail in any way; the others go on
            errors[index] = error
            alive[blocks[index]] = 0.0
    actions: np.ndarray | None = None
    success_prob = torch.zeros(batch, device=device)
    rule = model_success_rule(model)
    judge = SuccessJudge(rule, batch, int(np.prod(model.observation_space.shape))) if rule else None
    ends_by, paid_by = task_rules(model) if rules else (None, None)
    running = [error is None for error in errors]  # a block whose episodes have all ended needs no actions
    decoded = _policy_view(model, state)
    for _ in range(horizon):
        for index, policy in enumerate(policies):
            if not running[index] or errors[index] is not None:
                continue
            try:
                chosen = _check_policy_actions(model.action_space, policy.act(decoded[blocks[index]]), block)
            except Exception as error:  # a user's policy can fail in any way; the others go on
                errors[index] = error
                alive[blocks[index]] = 0.0
                continue
            if actions is None:
                actions = np.zeros((batch, *chosen.shape[1:]), chosen.dtype)
            actions[blocks[index]] = chosen
        if actions is None or all(error is not None for error in errors):
            break  # every policy failed
        out = model.step(
            state,
            torch.tensor(actions, device=device),
            uncertainty=members == 1 and measured,
            generator=generator,
            tiles=tiles,
        )
        reward, reached = out.reward, None
        if ends_by is not None or paid_by is not None:
            reached = _policy_view(model, out.state).reshape(batch, -1)
        if paid_by is not None:
            paid = paid_by(decoded.reshape(batch, -1), actions, reached)
            reward = torch.as_tensor(np.asarray(paid), dtype=out.reward.dtype, device=device)
        finite = torch.isfinite(reward) & _finite_states(model, out.state)
        if limits is not None:  # far outside the data is as good as infinite
            finite &= limits.within(model.decode(out.state), reward)
        diverged |= ~finite & (alive > 0)
        alive = torch.where(finite, alive, torch.zeros_like(alive))
        returns += (alive * torch.nan_to_num(reward)).double()
        if measured:
            uncertainty += alive * torch.nan_to_num(_disagreement(model, out, members, count, tiles))
        if known_states is not None:
            visited.append((model.decode(out.state)[watched].float(), alive[watched] > 0.5))
        length += alive
        state = _replace_rows(out.state, ~finite, initial)  # dead rows stay finite for the policy
        decoded = _policy_view(model, state)
        if judge is not None:  # the task's rule over the decoded states, as the real task judges them
            judge.push(decoded.reshape(batch, -1))
            success_prob = torch.as_tensor(judge.label(False), device=device).float()
            success_if_ended = torch.as_tensor(judge.label(True), device=device).float()
        else:
            success_prob = success_if_ended = torch.nan_to_num(out.success_prob)
        success_prob = torch.where(finite, success_prob, torch.zeros_like(alive))
        if termination:
            continue_prob = torch.nan_to_num(out.continue_prob)
            if ends_by is not None:
                ended = torch.as_tensor(np.asarray(ends_by(reached), dtype=bool), device=device)
                continue_prob = (~ended).to(continue_prob.dtype)
            continue_prob = torch.where(finite, continue_prob, torch.zeros_like(alive))
            ended = alive * (1.0 - continue_prob)
            success += ended * torch.where(finite, success_if_ended, torch.zeros_like(alive))
            alive = alive * continue_prob
        running = (alive.view(tiles, block).amax(1) >= 1e-6).tolist()
        if not any(running):
            break
    success += alive * success_prob
    results: list[ImaginedRollouts | Exception] = []
    per_watched = len(watched) // tiles
    for index, rows in enumerate(blocks):
        if errors[index] is not None:
            results.append(errors[index])
            continue
        per_member = returns[rows].reshape(members, count).cpu().numpy()
        per_start = per_member.mean(0)
        member_means = per_member.mean(1)
        outside = None
        if known_states is not None:
            mine = slice(index * per_watched, (index + 1) * per_watched)
            states = [values[mine][running[mine]] for values, running in visited]
            outside = known_states.outside_fraction(torch.cat(states), seed) if states else 0.0
        results.append(
            ImaginedRollouts(
                return_=bootstrap_interval(per_start, seed),
                per_start=per_start.tolist(),
                member_returns=member_means.tolist(),
                member_spread=float(member_means.std()) if members > 1 else None,
                success=float(success[rows].mean()),
                uncertainty=float((uncertainty[rows] / length[rows].clamp_min(1)).mean())
                if measured
                else None,
                outside_fraction=outside,
                length=float(length[rows].mean()),
                diverged=int(diverged[rows].sum()),
                horizon=horizon,
                success_source=success_source(rule),
            )
        )
    return results


class _Replay:
    """Episodes' logged actions played back as a policy: batch row ``r`` plays episode ``r % count``
    (rows tile the episodes, one tile per ensemble member), its last action held past its end."""

    def __init__(self, actions: np.ndarray) -> None:
        self.actions = actions  # (episodes, steps, *action_shape)
        self.step = 0

    def reset(self, slots: np.ndarray) -> None:
        self.step = 0

    def act(self, observations: np.ndarray) -> np.ndarray:
        rows = np.arange(len(observations)) % len(self.actions)
        chosen = self.actions[rows, min(self.step, self.actions.shape[1] - 1)]
        self.step += 1
        return chosen


@dataclass(frozen=True)
class Replayed:
    """Held-out episodes of a model's data replayed in the model (:func:`replay_held_out`)."""

    #: each episode's real return over its first ``horizon`` steps
    real: np.ndarray
    #: the return the model imagined for the same actions from the same first state
    imagined: np.ndarray

    @property
    def residuals(self) -> np.ndarray:
        """Real minus imagined return, episode by episode."""
        return self.real - self.imagined


def replay_held_out(
    model: WorldModel,
    dataset: Dataset,
    horizon: int,
    seed: int = 0,
    members: str = "each",
    rules: bool = False,
    episodes: int = 256,
    segment: int | None = None,
) -> Replayed | None:
    """Replay held-out episodes of the model's data in the model: each from its first real state with
    its logged actions, for ``horizon`` steps, imagined as a ranking imagines a policy (the same
    ``members``, ``rules`` and seed), beside the return the real task gave those actions.

    Episodes that ended before ``horizon`` without terminating (cut by the collection, not by the task)
    are left out, as are episodes without actions. Held out means the validation episodes of the
    model's own split when ``dataset`` is its training data (:func:`held_out_episodes`).

    :param segment: replay each episode instead in segments of so many steps, each from its real state
        along the episode, and sum them: the model's error where every stretch starts from the data
        (the real return then counts the steps the whole segments cover).
    :returns: the replayed episodes (at most ``episodes`` of them), or None for a model of frames or
        when no episode qualifies.
    """
    from imaginarium.models.evaluate import held_out_episodes

    if model.observes_pixels:
        return None
    held, _ = held_out_episodes(model, dataset)
    lengths = held.episode_lengths
    firsts, lasts = held.episode_starts[:-1], held.episode_starts[1:] - 1
    usable = (lengths >= horizon) | held.terminated[lasts]
    usable &= ~held.episode_action_free()
    chosen = np.flatnonzero(usable)[:episodes]
    if len(chosen) == 0:
        return None
    if segment is None or segment >= horizon:
        steps = int(min(horizon, lengths[chosen].max()))
        actions = np.stack(
            [held.actions[np.minimum(np.arange(firsts[e], firsts[e] + steps), lasts[e])] for e in chosen]
        )
        real = np.array(
            [held.rewards[firsts[e] : firsts[e] + min(horizon, lengths[e])].sum() for e in chosen]
        )
        starts = model.inputs(held, firsts[chosen])
        owners = np.arange(len(chosen))
        rolled = horizon
    else:  # whole segments from each real state along the episode, summed
        covered = np.minimum(horizon, lengths[chosen]) // segment * segment
        keep = covered > 0
        chosen, covered = chosen[keep], covered[keep]
        if len(chosen) == 0:
            return None
        rows = np.concatenate(
            [firsts[e] + np.arange(0, n, segment) for e, n in zip(chosen, covered, strict=True)]
        )
        owners = np.concatenate([np.full(n // segment, i) for i, n in enumerate(covered)])
        actions = held.actions[rows[:, None] + np.arange(segment)]
        real = np.array(
            [held.rewards[firsts[e] : firsts[e] + n].sum() for e, n in zip(chosen, covered, strict=True)]
        )
        starts = model.inputs(held, rows)
        rolled = segment
    (imagined,) = imagined_rollouts_lockstep(
        model, [_Replay(actions)], np.asarray(starts), rolled, seed=seed, members=members, rules=rules
    )
    if isinstance(imagined, Exception):
        raise imagined
    summed = np.bincount(owners, weights=np.asarray(imagined.per_start), minlength=len(chosen))
    return Replayed(real=real.astype(np.float64), imagined=summed)


def task_rules(model: WorldModel) -> tuple[Any, Any]:
    """The termination and reward rules of the task on the model's card, each ``None`` where none is
    known or the model sees frames (no state to judge)."""
    env_id = (getattr(model, "card", None) or {}).get("env_id")
    frames = model.observes_pixels
    return task_rule("termination", env_id, frames), task_rule("reward", env_id, frames)


def _policy_view(model: WorldModel, state: dict[str, torch.Tensor]) -> np.ndarray:
    """What a policy sees of imagined states: decoded frames, or decoded states clipped to the space."""
    if model.observes_pixels:
        return model.decode(state).cpu().numpy()
    return (
        torch.clamp(model.decode(state), model.observation_low, model.observation_high).float().cpu().numpy()
    )


def _finite_states(model: WorldModel, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B,)`` whether each state is finite (frames always are: the model's features decide)."""
    values = model.features(state) if model.observes_pixels else model.decode(state)
    return torch.isfinite(values).all(-1)


def _episode_success(task: Task | None, steps: list[tuple[np.ndarray, bool, bool, Any]]) -> bool | None:
    """Whether the episode's last step succeeds: the task's rule, else the env's own ``info`` label."""
    if task is not None and task.success is not None:
        next_observations = np.stack([step[0] for step in steps])
        terminated = np.array([step[1] for step in steps])
        truncated = np.array([step[2] for step in steps])
        return bool(task.success(next_observations, terminated, truncated)[-1])
    label = steps[-1][3]
    return None if label is None else bool(label)


def real_rollouts(
    task: Task,
    policy: Policy,
    episodes: int,
    seed: int = 0,
    max_episode_steps: int | None = None,
    pixels: int | None = None,
    drawn: bool = False,
) -> EpisodeRollouts:
    """Run ``episodes`` real episodes side by side (:func:`episode_rollouts`), seeds ``seed + i``.

    :param pixels: the policy sees frames: by default the env's own rendered frames, as ``collect
        --pixels`` stores them (the policy of a world model that learned from frames; default the
        policy's own ``pixels`` attribute, which a Dreamer agent of such a model has).
    :param drawn: the frames are instead the real states drawn as ``WAMImagined-v0`` draws them (an
        agent trained on imagined frames).
    """
    if episodes < 1:
        raise ImaginariumError(f"episodes must be a positive integer, got {episodes}")
    options = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    pixels = pixels if pixels is not None else getattr(policy, "pixels", None)
    from imaginarium.envs.render import FrameObservation, PixelObservation

    if pixels is None:
        envs = [task.make(**options) for _ in range(episodes)]
    elif drawn:
        envs = [PixelObservation(task.make(**options), task, pixels) for _ in range(episodes)]
    else:
        envs = [FrameObservation(task, pixels, **options) for _ in range(episodes)]
    return episode_rollouts(envs, policy, seed, task)


def episode_rollouts(
    envs: list[gym.Env],
    policy: Policy,
    seed: int = 0,
    task: Task | None = None,
    reset_options: list[dict[str, Any]] | None = None,
    keep_states: bool = False,
) -> EpisodeRollouts:
    """One episode in each of ``envs`` side by side (one batched ``act`` per step), reset with seeds
    ``seed + i``: the one episode loop of evaluation, for real envs and imagined ones alike. The envs
    are closed afterwards.

    :param task: decides success from the states (else success is read from ``info``).
    :param reset_options: each env's ``reset`` options (an imagined env's ``start_observation``).
    :param keep_states: keep each episode's states (:attr:`EpisodeRollouts.states`).
    :returns: the figures of :class:`EpisodeRollouts`: returns, success, and each episode's steps
        and whether it was terminated (rather than truncated).
    """
    from imaginarium.envs.render import FRAME_STATE_KEY

    episodes = len(envs)
    try:
        options = reset_options or [None] * episodes
        observations = np.stack(
            [env.reset(seed=seed + i, options=options[i])[0] for i, env in enumerate(envs)]
        )
        firsts = observations.copy()
        returns = np.zeros(episodes)
        history: list[list[tuple[np.ndarray, bool, bool, Any]]] = [[] for _ in range(episodes)]
        running = np.ones(episodes, dtype=bool)
        policy.reset(np.arange(episodes))
        space = envs[0].action_space
        while running.any():
            actions = policy.act(observations)
            _check_policy_actions(space, actions, episodes)  # shape and finiteness, for a clear error
            actions = np.asarray(actions)
            for i in np.flatnonzero(running):
                observation, reward, terminated, truncated, info = envs[i].step(actions[i])
                observations[i] = observation
                returns[i] += float(reward)
                label = next((info[key] for key in INFO_SUCCESS_KEYS if key in info), None)
                state = info.get(FRAME_STATE_KEY, observation)  # a frame's state, for the success rule
                history[i].append((np.asarray(state), bool(terminated), bool(truncated), label))
                running[i] = not (terminated or truncated)
        successes = [_episode_success(task, steps) for steps in history]
        known = [value for value in successes if value is not None]
        lengths = [len(steps) for steps in history]
        return EpisodeRollouts(
            return_=bootstrap_interval(returns, seed),
            per_episode=returns.tolist(),
            success=float(np.mean(known)) if known else None,
            length=float(np.mean(lengths)),
            lengths=lengths,
            terminated=[steps[-1][1] for steps in history],  # a last step also truncated still terminated
            states=[
                np.stack([first, *(step[0] for step in steps)])
                for first, steps in zip(firsts, history, strict=True)
            ]
            if keep_states
            else None,
            starts=firsts,
        )
    finally:
        for env in envs:
            env.close()


@dataclass(frozen=True)
class ClosedLoop:
    """One policy run on the real task and in the model from the same start states, step for step."""

    policy: str
    real_return: float
    imagined_return: float
    real_length: float
    imagined_length: float
    #: mean over episodes of the step at which the imagined states first lie farther from the real
    #: ones than ``tolerance`` (root-mean-square over dimensions, in the data's standard deviations);
    #: the shorter episode's length where they never do
    departure_step: float
    #: each episode's departure step
    departures: list[int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClosedLoopFidelity:
    """:class:`ClosedLoop` figures of several policies, and how far the imagined returns are off."""

    tolerance: float
    episodes: int
    policies: list[ClosedLoop]
    #: DOPE's normalised absolute error: mean |imagined - real| return over the real returns' range
    #: across the policies (``None`` for one policy, or policies whose real returns tie)
    normalised_absolute_error: float | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "policies": [policy.to_json() for policy in self.policies]}


def closed_loop_fidelity(
    model: WorldModel,
    task: Task,
    policies: Sequence[str],
    episodes: int = 5,
    seed: int = 0,
    tolerance: float = 1.0,
    allow_code: bool = False,
) -> ClosedLoopFidelity:
    """How far the model follows the real task under whole policies: each runs ``episodes`` real
    episodes and, from each one's first state, an imagined one (the same policy acting on what the model
    shows it); their returns, lengths and the step where the imagined states leave the real ones.

    :param tolerance: how far apart, in the data's standard deviations (root-mean-square over the
        dimensions), imagined and real states may be before the imagined trajectory has left the real one.
    """
    from imaginarium.envs.imagined import ImaginedEnv
    from imaginarium.policy import load_policy, policy_name

    if episodes < 1 or tolerance <= 0:
        raise ImaginariumError(f"episodes must be ≥ 1 and tolerance > 0, got {episodes} and {tolerance}")
    scale = model.starts.states.std(0) + 1e-6 if getattr(model, "starts", None) is not None else None
    results = []
    for spec in policies:
        policy = load_policy(spec, model.input_space, model.action_space, seed=seed, allow_code=allow_code)
        real = episode_rollouts([task.make() for _ in range(episodes)], policy, seed, task, keep_states=True)
        assert real.states is not None
        imagined = episode_rollouts(
            [ImaginedEnv(model=model, time_limit=task.max_episode_steps or None) for _ in range(episodes)],
            policy,
            seed,
            reset_options=[{"start_observation": states[0]} for states in real.states],
            keep_states=True,
        )
        assert imagined.states is not None
        spread = scale if scale is not None else np.concatenate(real.states).std(0) + 1e-6
        departures = [
            _departure(ours, theirs, spread, tolerance)
            for ours, theirs in zip(imagined.states, real.states, strict=True)
        ]
        results.append(
            ClosedLoop(
                policy_name(spec),
                real.return_["mean"],
                imagined.return_["mean"],
                real.length,
                imagined.length,
                float(np.mean(departures)),
                departures,
            )
        )
    real_returns = np.array([result.real_return for result in results])
    errors = np.abs([result.imagined_return - result.real_return for result in results])
    span = float(np.ptp(real_returns)) if len(results) > 1 else 0.0
    return ClosedLoopFidelity(tolerance, episodes, results, float(errors.mean() / span) if span > 0 else None)


def _departure(imagined: np.ndarray, real: np.ndarray, scale: np.ndarray, tolerance: float) -> int:
    states = min(len(imagined), len(real))  # the first state, then one a step
    gaps = np.sqrt(np.mean(((imagined[:states] - real[:states]) / scale) ** 2, axis=1))
    beyond = np.flatnonzero(~(gaps <= tolerance))  # a non-finite gap counts as gone
    return int(beyond[0]) if len(beyond) else states - 1
