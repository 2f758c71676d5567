"""Imagined steps side by side with mbrl-lib's ``ModelEnv`` (issue #26), and one env against real Hopper.

In one process, one torch thread, on the same Hopper-sized Gaussian MLP ensemble (7 members × 4 × 200,
SiLU, one member drawn per sample, learned reward, normalised inputs): mbrl-lib's ``ModelEnv`` over its
``GaussianMLP`` (``propagation_method="random_model"``, Hopper's termination function) and
``WAMImagined-v0``'s vector env (``track_uncertainty=False``, ``termination="none"``: no learned head
ends an episode, as no head ends one in ``ModelEnv``), timed in alternating rounds at each batch size
(multiples of 7, as mbrl-lib's ``random_model`` needs). Then a single ``gym.make("WAMImagined-v0")``
(one member per step), stepped as SB3 steps one env, against real Hopper-v5 in the same run.
Our vector env is also timed with ``precision="bfloat16"`` (its layers in bfloat16), beside the rest.

Speed does not depend on training, so both models are fresh, their normalisers fitted on the same
random Hopper data. mbrl-lib is read from its public release (``pip install --no-deps mbrl==0.2.0``
with the ``experiments`` extra, as ``make bench`` does; or its source on ``PYTHONPATH``), never vendored;
without it only our side is timed.

    python experiments/bench_mbrl.py [--seconds 2] [--rounds 3] [--sizes 7,70,1029,4095]
    python experiments/bench_mbrl.py --smoke
"""

from __future__ import annotations

import copy
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from bench_imagined import env_steps_per_second, real_hopper_steps_per_second
from common import calls_per_second, machine, parse_config, write_report

import imaginarium  # noqa: F401  (registers WAMImagined-v0)
from imaginarium.collect import collect
from imaginarium.dataset import Dataset, load_dataset
from imaginarium.envs.imagined import ImaginedVectorEnv
from imaginarium.models import WorldModel, build_model

#: mbrl-lib's imagined episodes restart after this many steps (ours end where they diverge)
RESTART = 25


@dataclass(frozen=True)
class Config:
    seconds: float = 2.0
    rounds: int = 3
    sizes: str = "7,70,1029,4095"
    #: random Hopper episodes the normalisers and start states come from
    episodes: int = 200
    out: str = "experiments/results/bench_mbrl.json"
    SMOKE: ClassVar[dict] = {"seconds": 0.05, "rounds": 1, "sizes": "7", "episodes": 5}


def mbrl_env(dataset: Dataset) -> Any | None:
    """mbrl-lib's ``ModelEnv`` over a fresh 7 × 4 × 200 SiLU ensemble, or ``None`` without mbrl-lib."""
    try:
        import mbrl.env.termination_fns as termination_fns
        import mbrl.models
        import mbrl.types
    except ImportError as error:
        print(f"mbrl-lib not importable ({error}): timing our side alone; `make bench` installs it")
        return None
    observations, actions = dataset.observations.shape[1], dataset.actions.shape[1]
    members = mbrl.models.GaussianMLP(
        observations + actions, observations + 1, "cpu", num_layers=4, ensemble_size=7, hid_size=200,
        deterministic=False, propagation_method="random_model", activation_fn_cfg={"_target_": "torch.nn.SiLU"},
    )  # fmt: skip
    model = mbrl.models.OneDTransitionRewardModel(
        members, target_is_delta=True, normalize=True, learned_rewards=True
    )
    model.update_normalizer(
        mbrl.types.TransitionBatch(
            dataset.observations,
            dataset.actions,
            dataset.next_observations,
            dataset.rewards,
            dataset.terminated,
            dataset.truncated,
        )  # fmt: skip
    )
    return mbrl.models.ModelEnv(
        gym.make("Hopper-v5"), model, termination_fns.hopper, generator=torch.Generator().manual_seed(0)
    )


def our_model(dataset: Dataset) -> WorldModel:
    """Our fresh ensemble of the same shape (preset ``m``: 7 members × 4 × 200, SiLU)."""
    model = build_model("ensemble", dataset.observation_space, dataset.action_space, "m")
    model.fit_normalizers(dataset)
    model.fit_outcomes(dataset)
    return model.eval()


def side_by_side(model: WorldModel, theirs: Any, dataset: Dataset, size: int, config: Config) -> dict:
    """Steps/s of both at ``size`` envs: each round times theirs then ours; medians over the rounds."""
    actions = np.random.default_rng(0).uniform(-1, 1, (size, dataset.actions.shape[1])).astype(np.float32)
    ours = ImaginedVectorEnv(size, model, dataset=dataset, termination="none", track_uncertainty=False)
    ours.reset(seed=0)
    low = ImaginedVectorEnv(
        size, copy.deepcopy(model), dataset=dataset, termination="none", track_uncertainty=False,
        precision="bfloat16",
    )  # fmt: skip
    low.reset(seed=0)
    starts = dataset.observations[np.arange(size) % len(dataset.observations)]
    calls = [0, None]

    def their_step() -> None:
        # ModelEnv steps the state it is given in place and never checks it: an untrained model's
        # state drifts to NaN within a few hundred steps, so it restarts every RESTART steps
        if calls[0] % RESTART == 0:
            calls[1] = theirs.reset(starts)
        theirs.step(actions, calls[1], sample=True)
        calls[0] += 1

    rates: dict[str, list[float]] = {"mbrl_lib": [], "ours": [], "ours_bfloat16": []}
    for _ in range(config.rounds):
        if theirs is not None:
            rates["mbrl_lib"].append(size * calls_per_second(their_step, config.seconds))
        rates["ours"].append(size * calls_per_second(lambda: ours.step(actions), config.seconds))
        rates["ours_bfloat16"].append(size * calls_per_second(lambda: low.step(actions), config.seconds))
    row: dict[str, Any] = {
        "num_envs": size,
        "ours_steps_per_s": statistics.median(rates["ours"]),
        "ours_bfloat16_steps_per_s": statistics.median(rates["ours_bfloat16"]),
    }
    if rates["mbrl_lib"]:
        for name in ("ours", "ours_bfloat16"):
            ratios = [mine / theirs for mine, theirs in zip(rates[name], rates["mbrl_lib"], strict=True)]
            row[f"{name}_over_mbrl_lib"] = statistics.median(ratios)
            row[f"{name}_rounds"] = ratios
        row["mbrl_lib_steps_per_s"] = statistics.median(rates["mbrl_lib"])
    return row


def single_env_steps_per_second(model: WorldModel, dataset: Dataset, seconds: float) -> float:
    """One ``gym.make("WAMImagined-v0")`` stepped with random actions, reset at the end of episodes."""
    env = gym.make("WAMImagined-v0", model=model, dataset=dataset, track_uncertainty=False)
    actions = np.random.default_rng(0).uniform(-1, 1, (4096, dataset.actions.shape[1])).astype(np.float32)
    return env_steps_per_second(env, actions, seconds)


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        collect("hopper", Path(scratch) / "data", episodes=config.episodes, progress=False)
        dataset = load_dataset(Path(scratch) / "data")
    torch.manual_seed(0)  # both models' random weights, the same every run
    model, theirs = our_model(dataset), mbrl_env(dataset)
    rows = []
    for size in (int(size) for size in config.sizes.split(",")):
        row = side_by_side(model, theirs, dataset, size, config)
        rows.append(row)
        shown = f"n={size:>5}: ours {row['ours_steps_per_s']:>10,.0f}/s"
        shown += f"  bfloat16 {row['ours_bfloat16_steps_per_s']:>10,.0f}/s"
        if "mbrl_lib_steps_per_s" in row:
            shown += (
                f"  mbrl-lib {row['mbrl_lib_steps_per_s']:>10,.0f}/s  ours/mbrl-lib "
                f"{row['ours_over_mbrl_lib']:.2f} (bfloat16 {row['ours_bfloat16_over_mbrl_lib']:.2f})"
            )
        print(shown, flush=True)
    real = real_hopper_steps_per_second(config.seconds)
    single = single_env_steps_per_second(model, dataset, config.seconds)
    print(f"one WAMImagined-v0 {single:,.0f} steps/s, real Hopper-v5 {real:,.0f}: {single / real:.2f}×")
    write_report(
        config.out,
        {
            "benchmark": "mbrl",
            "config": asdict(config),
            "machine": machine(),
            "mbrl_lib": theirs is not None,
            "figures": rows,
            "single_env_steps_per_s": single,
            "real_hopper_steps_per_s": real,
            "single_env_over_real_hopper": single / real,
        },
    )


if __name__ == "__main__":
    main()
