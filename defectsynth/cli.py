"""The defectsynth command line: parses options, calls the library, prints. No logic of its own."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from defectsynth.data.split import make_split, save_split
from defectsynth.errors import DefectsynthError
from defectsynth.workspace import Workspace

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Synthesize defect images, rebalance a long-tailed training set, and measure the gain "
                       "on held-out real defects.")
data_app = typer.Typer(no_args_is_help=True, help="Get, make and check MVTec-AD-style category folders.")
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", envvar="DEFECTSYNTH_DATA", show_default="data/transistor",
    help="MVTec AD category folder (default: $DEFECTSYNTH_DATA, else data/transistor).")]
WorkOpt = Annotated[Optional[Path], typer.Option(
    "--work", show_default="runs/<category>", help="Workspace folder for split, synthetic images, training sets and reports.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same outputs.")]


def friendly_errors(fn):
    """Print a DefectsynthError as one line and exit 2, instead of a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DefectsynthError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    return wrapper


@app.command("split")
@friendly_errors
def split_cmd(
    data: DataOpt = None,
    work: WorkOpt = None,
    shots: Annotated[int, typer.Option("--shots", help="Real defects per type for generation and training.")] = 3,
    protocol: Annotated[str, typer.Option("--split", help="first: the first K by file name (the published "
                                                          "protocol); random: a seeded random K.")] = "first",
    seed: SeedOpt = 0,
):
    """Write <work>/split.json: which real defects are for training, which are held out."""
    ws = Workspace.open(data, work)
    split = make_split(ws.data, shots=shots, protocol=protocol, seed=seed)
    save_split(split, ws.split_json)
    console.print(f"Wrote {ws.split_json}: {split.protocol} split, {split.shots} train defects per type.")
    for label in split.classes:
        n_train = sum(r.label == label and r.split == "train" for r in split.rows)
        n_test = sum(r.label == label and r.split == "test" for r in split.rows)
        console.print(f"  {label:<16} train {n_train:>4}   held out {n_test:>4}")


if __name__ == "__main__":
    app()
