"""Dreamer imagination speed (issue #5): imagined latent steps/s for a batch of 1024 starts, per family.

For each family (ensemble presets ``s`` and ``m``, rssm ``s``; fresh models with fitted normalisers on
a small Hopper dataset, since speed does not depend on training): the actor imagines ``horizon`` steps
from 1024 real starts (``DreamerLearner.imagine``), and a whole update (imagination, λ-returns, actor
and critic steps) is timed too.

    python experiments/bench_dreamer.py [--starts 1024] [--seconds 5]
    python experiments/bench_dreamer.py --smoke  # a call or two of 8 starts × 2 steps
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from common import calls_per_second, machine, parse_config, write_report

from imaginarium.agents.dreamer import DreamerConfig, DreamerLearner, start_sampler, start_states
from imaginarium.collect import collect
from imaginarium.dataset import load_dataset
from imaginarium.models import build_model


@dataclass(frozen=True)
class Config:
    starts: int = 1024
    horizon: int = 15
    seconds: float = 5.0
    #: random Hopper episodes the normalisers and start states come from
    episodes: int = 60
    out: str = "experiments/results/bench_dreamer.json"
    SMOKE: ClassVar[dict] = {"starts": 8, "horizon": 2, "seconds": 0.05, "episodes": 3}


def main() -> None:
    config = parse_config(Config, __doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as scratch:
        collect("hopper", Path(scratch) / "data", episodes=config.episodes, progress=False)
        dataset = load_dataset(Path(scratch) / "data")
    rows = []
    for family, preset in (("ensemble", "s"), ("ensemble", "m"), ("rssm", "s")):
        model = build_model(family, dataset.observation_space, dataset.action_space, preset)
        model.fit_normalizers(dataset)
        model.fit_outcomes(dataset)
        dreamer = DreamerConfig(batch_size=config.starts, horizon=config.horizon)
        learner = DreamerLearner(model, dreamer)
        sampler = start_sampler(model, dataset, dreamer)
        state = start_states(model, sampler)
        imagine_rate = calls_per_second(
            lambda learner=learner, state=state: learner.imagine(state), config.seconds, 1
        )
        update_rate = calls_per_second(
            lambda learner=learner, state=state: learner.update(state), config.seconds, 1
        )
        row = {
            "family": family,
            "preset": preset,
            "starts": config.starts,
            "horizon": config.horizon,
            "imagined_steps_per_s": imagine_rate * config.starts * config.horizon,
            "updates_per_s": update_rate,
            "update_imagined_steps_per_s": update_rate * config.starts * config.horizon,
        }
        rows.append(row)
        print(
            f"{family:>8} {preset}: imagination {row['imagined_steps_per_s']:>10,.0f} latent steps/s; "
            f"whole update {update_rate:.2f}/s ({row['update_imagined_steps_per_s']:,.0f} steps/s)"
        )
    write_report(
        config.out, {"benchmark": "dreamer", "config": asdict(config), "machine": machine(), "figures": rows}
    )


if __name__ == "__main__":
    main()
