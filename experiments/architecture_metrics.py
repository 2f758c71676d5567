"""The figures the architecture issue is judged by, measured from the tree: module sizes, imports
inside functions, repeated blocks, public functions returning untyped dicts, README lines and,
with ``--suite``, the test suite's time.

Methods named ``to_json`` are not counted as returning untyped dicts: they are a typed result's
serialisation for the file it is written to, not a result without a type.

    python experiments/architecture_metrics.py --out experiments/results/architecture.json [--suite]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("imaginarium", "agents", "envs", "rewards")


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _untyped_dict_returns(tree: ast.Module) -> list[str]:
    """Public functions and methods annotated to return ``dict[str, Any]``: results with no type
    (``to_json`` methods aside, the JSON form of a typed result)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name.startswith("_") or node.name == "to_json":
            continue
        annotation = ast.unparse(node.returns) if node.returns else ""
        if annotation in ("dict[str, Any]", "Dict[str, Any]"):
            found.append(node.name)
    return found


def _imports_inside_functions(tree: ast.Module) -> int:
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            count += sum(isinstance(inner, ast.Import | ast.ImportFrom) for inner in ast.walk(node))
    return count


def _duplicates() -> int | None:
    """Pairs of places sharing six or more lines, by the ``duplicates`` tool where it is installed."""
    if shutil.which("duplicates") is None:
        return None
    output = subprocess.run(
        ["duplicates", "--most", "1", "--seconds", "60"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    match = re.search(r"(\d+) pairs?", output)
    return 0 if match is None else int(match.group(1))


def measure(suite: bool) -> dict[str, object]:
    """Every figure, as a JSON-ready mapping."""
    sizes, inside, untyped = {}, {}, {}
    for path in _modules():
        text = path.read_text()
        tree = ast.parse(text)
        name = str(path.relative_to(ROOT))
        sizes[name] = len(text.splitlines())
        inside[name] = _imports_inside_functions(tree)
        if found := _untyped_dict_returns(tree):
            untyped[name] = found
    largest = dict(sorted(sizes.items(), key=lambda item: -item[1])[:5])
    figures: dict[str, object] = {
        "largest_modules": largest,
        "imports_inside_functions": sum(inside.values()),
        "imports_inside_functions_by_module": {k: v for k, v in sorted(inside.items()) if v},
        "repeated_blocks": _duplicates(),
        "public_functions_returning_untyped_dicts": sum(len(names) for names in untyped.values()),
        "untyped_dict_functions": untyped,
        "readme_lines": len((ROOT / "README.md").read_text().splitlines()),
    }
    if suite:
        started = time.perf_counter()
        result = subprocess.run(["make", "test"], cwd=ROOT, capture_output=True, text=True)
        figures["suite_seconds"] = round(time.perf_counter() - started, 1)
        figures["suite_passed"] = result.returncode == 0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/architecture.json")
    parser.add_argument("--suite", action="store_true", help="also time `make test`")
    args = parser.parse_args()
    figures = measure(args.suite)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    details = ("imports_inside_functions_by_module", "untyped_dict_functions")
    json.dump({key: value for key, value in figures.items() if key not in details}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
