"""Wall time of each stage of a recipe run end to end, and where the time goes.

Each recipe runs into a fresh work folder (nothing skipped), so the figures are those of a first run.
train-eval is split into the classifiers' own training time and the rest (per-split generate and
rebalance, held-out evaluation, the report).

    .venv/bin/python bench/e2e.py                                  # demo.yaml, then transistor.yaml if its data exists
    .venv/bin/python bench/e2e.py recipes/demo.yaml --work /tmp/e2e
    .venv/bin/python bench/e2e.py recipes/transistor.yaml --data ../shared/data/mvtec_ad_512/transistor
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from defectsynth.pipeline import run_recipe
from defectsynth.recipe import load_recipe
from defectsynth.workspace import default_data

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data/mvtec_ad_512/transistor"


def bench(recipe_path: Path, data: Path | None, work: Path, console: Console) -> None:
    recipe = load_recipe(recipe_path)
    if work.exists():
        shutil.rmtree(work)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    result = run_recipe(recipe, data=data, work=work, say=lambda m: console.print(f"  {m}"), timings=timings)
    total = time.perf_counter() - start
    if result is not None:
        training = sum(run["wall_s"] for run in result["runs"])
        timings["train-eval: training classifiers"] = training
        timings["train-eval: per-split generate, rebalance, evaluate, report"] = timings.pop("train-eval") - training

    table = Table(title=f"{recipe_path.name}: {total:.0f} s wall, {os.cpu_count()} CPUs")
    table.add_column("stage")
    table.add_column("wall s", justify="right")
    table.add_column("share", justify="right")
    for stage, seconds in timings.items():
        table.add_row(stage, f"{seconds:.1f}", f"{seconds / total:.0%}")
    console.print(table)
    if result is not None:
        console.print(f"report: {result['report_dir'] / 'report.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, help="data folder for recipes without one (default: as the CLI)")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one per recipe)")
    args = parser.parse_args()
    console = Console(width=max(100, Console().width))

    recipes = args.recipes
    data = args.data
    if not recipes:
        recipes = [ROOT / "recipes/demo.yaml"]
        real = data or (default_data() if (default_data() / "train").is_dir() else SHARED)
        if (real / "train" / "good").is_dir():
            recipes.append(ROOT / "recipes/transistor.yaml")
            data = real
        else:
            console.print(f"transistor.yaml skipped: no data at {real} (pass --data)")
    for path in recipes:
        if not path.is_file():
            sys.exit(f"bench/e2e.py: recipe {path} not found")
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work / path.stem if args.work else Path(tmp) / path.stem
            # demo.yaml names its own demo data folder; --data only fills recipes that leave it open
            bench(path, None if load_recipe(path).data.path else data, work, console)


if __name__ == "__main__":
    main()
