"""What the pipelines and the command line print for people: summaries as aligned tables."""

from __future__ import annotations

from typing import Any


def print_summary(summary: dict[str, Any]) -> None:
    """``summary`` as a two-column table: names in bold, numbers to four figures, nested figures in a row."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in summary.items():
        if isinstance(value, dict):
            value = "  ".join(f"{k} {v:,.4g}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key.replace("_", " "), "—" if value is None else str(value))
    Console().print(table)


def interval(figures: dict[str, float]) -> str:
    """A return as every command prints it: the mean and its 95% interval."""
    return f"{figures['mean']:.1f} [{figures['ci_low']:.1f}, {figures['ci_high']:.1f}]"


def print_closed_loop(figures: dict[str, Any]) -> None:
    """Closed-loop fidelity (``evaluate-model --policies``) as a table: one row per policy."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"closed loop, {figures['episodes']} episodes each", box=None, pad_edge=False)
    for column in ("policy", "real return", "imagined return", "real length", "imagined length", "leaves at"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for row in figures["policies"]:
        table.add_row(
            row["policy"],
            *(
                f"{row[key]:.1f}"
                for key in ("real_return", "imagined_return", "real_length", "imagined_length")
            ),
            f"{row['departure_step']:.1f}",
        )
    Console().print(table)
    error = figures["normalised_absolute_error"]
    if error is not None:
        Console().print(f"normalised absolute error of the imagined returns: {error:.3f}")
