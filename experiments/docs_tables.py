"""Rewrite the tables of ``docs/*.md`` from the JSON the benchmark and study scripts write.

A table to rewrite sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``; NAME says which
JSON it is drawn from (:data:`TABLES`). A table whose JSON has not been written is left as it is, so
the figures in the docs stay those last measured until a run replaces them.

- ``bench``: ``experiments/results/bench.json`` (``make bench``), one row per headline figure, as
  ``make bench`` prints it;
- ``ranking``: ``experiments/results/ranking_study.json`` (``experiments/ranking_study.py``);
- ``ranking_graded``: ``experiments/results/ranking_study_graded.json`` (the same with ``--zoo graded``);
- ``ranking_beyond``: ``experiments/results/ranking_beyond.json`` (the same with ``--data medium,...``:
  models of data without the best policies), with whether issue #23's thresholds are met.

    python experiments/docs_tables.py [--results experiments/results] [--docs docs]
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: the ranking metrics the ranking tables show, as ``imaginarium.metrics.ranking_metrics`` names them
RANKING_COLUMNS = {
    "spearman": "Spearman",
    "kendall": "Kendall",
    "regret_at_1": "regret@1",
    "regret_at_3": "regret@3",
    "abs_error": "abs. error",
    "mmrv": "MMRV",
}


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def bench_table(report: dict[str, Any]) -> list[str]:
    """``bench.json``'s figures with the same columns and number formats as ``experiments/bench.py``'s
    terminal table."""
    rows = []
    for figure in report["figures"]:
        value, unit = figure["value"], figure["unit"]
        if unit == "FLOP/s":
            value, unit = value / 1e9, "GFLOP/s"
        shown = f"{value:,.3g}" if abs(value) < 10 else f"{value:,.0f}"
        ratio = "" if figure["ratio"] is None else f"{figure['ratio']:.2f}"
        met = {None: "", True: "yes", False: "NO"}[figure["met"]]
        rows.append(
            [figure["name"], f"{shown} {unit}", ratio, figure["ratio_to"] or "", figure["target"] or "", met]
        )
    return markdown_table(["figure", "value", "ratio", "to", "asked", "met"], rows)


def metric_cells(metrics: dict[str, float] | None) -> list[str]:
    """A ranking's metrics in :data:`RANKING_COLUMNS` order, three decimals, ``n/a`` where missing."""
    metrics = metrics or {}
    return [f"{metrics[key]:.3f}" if key in metrics else "n/a" for key in RANKING_COLUMNS]


def ranking_table(report: dict[str, Any], policies_column: bool) -> list[str]:
    """One row per task of a ranking study on the expert mixture, in the order the study ran them
    (rows of weaker data, keyed ``task/kind``, belong to :func:`beyond_table`)."""
    rows = []
    for task, entry in report["tasks"].items():
        if "/" in task:
            continue
        cells = metric_cells(entry["metrics"])
        rows.append([task, *([str(entry["policies"])] if policies_column else []), *cells])
    header = ["task" if policies_column else "task (graded zoo)", *(["policies"] if policies_column else [])]
    return markdown_table([*header, *RANKING_COLUMNS.values()], rows)


def beyond_table(report: dict[str, Any]) -> list[str]:
    """One row per task and data kind of a ranking study on weaker data, with whether it met its
    thresholds."""
    rows = []
    for key, entry in report["tasks"].items():
        if "/" not in key:
            continue
        cells = metric_cells(entry["metrics"])
        task, _, data = key.partition("/")
        rows.append([task, data, str(entry["policies"]), *cells, "yes" if entry["met"] else "NO"])
    return markdown_table(["task", "data", "policies", *RANKING_COLUMNS.values(), "met"], rows)


#: table name -> (its JSON under the results folder, what draws the table from that JSON)
TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "bench": ("bench.json", bench_table),
    "ranking": ("ranking_study.json", lambda report: ranking_table(report, policies_column=True)),
    "ranking_graded": (
        "ranking_study_graded.json",
        lambda report: ranking_table(report, policies_column=False),
    ),
    "ranking_beyond": ("ranking_beyond.json", beyond_table),
}


def rewrite(text: str, results: Path) -> tuple[str, list[str]]:
    """``text`` with each marked table whose JSON exists redrawn, and the names of those redrawn."""
    done = []

    def redraw(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        file, draw = TABLES[name]
        if not (results / file).is_file():
            return match.group(0)
        done.append(name)
        table = "\n".join(draw(json.loads((results / file).read_text())))
        return f"<!-- table:{name} -->\n{table}\n<!-- /table:{name} -->"

    pattern = re.compile(r"<!-- table:(\w+) -->\n.*?<!-- /table:\1 -->", flags=re.DOTALL)
    return pattern.sub(redraw, text), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    for path in sorted(args.docs.glob("*.md")):
        text, done = rewrite(path.read_text(), args.results)
        if done:
            path.write_text(text)
            print(f"{path}: rewrote {', '.join(done)}")


if __name__ == "__main__":
    main()
