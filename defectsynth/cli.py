"""The defectsynth command line: parses options, calls the library, prints. No logic of its own."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from defectsynth.data.check import check_category, check_table
from defectsynth.data.download import CATEGORIES, download
from defectsynth.data.split import make_split, save_split
from defectsynth.errors import DefectsynthError
from defectsynth.workspace import Workspace, default_data

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Synthesize defect images, rebalance a long-tailed training set, and measure the gain "
                       "on held-out real defects.")
data_app = typer.Typer(no_args_is_help=True, help="Get, make and check MVTec-AD-style category folders.")
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


def say(msg: str) -> None:
    """Print plain text: paths and figures are not Rich markup, and long lines wrap as lines."""
    console.print(msg, markup=False, highlight=False, soft_wrap=True)


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
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
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
    say(f"Wrote {ws.split_json}: {split.protocol} split, {split.shots} train defects per type.")
    for label in split.classes:
        n_train = sum(r.label == label and r.split == "train" for r in split.rows)
        n_test = sum(r.label == label and r.split == "test" for r in split.rows)
        say(f"  {label:<16} train {n_train:>4}   held out {n_test:>4}")


@data_app.command("check")
@friendly_errors
def data_check_cmd(
    path: Annotated[Optional[Path], typer.Argument(
        show_default="$DEFECTSYNTH_DATA, else data/transistor", help="MVTec AD category folder to check.")] = None,
):
    """Check a category folder: per-class table, then one line per problem (exit code 2 if any)."""
    result = check_category(path if path is not None else default_data())
    console.print(check_table(result))
    for problem in result.problems:
        say(problem.line)
    if result.problems:
        err_console.print(f"{len(result.problems)} problem(s) in {result.root}; fix them and run the check again.",
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    say(f"OK: {result.root} has no problems (masks match their images).")


@data_app.command("download")
@friendly_errors
def data_download_cmd(
    category: Annotated[str, typer.Option("--category", help=f"MVTec AD category: {', '.join(CATEGORIES)}.")]
    = "transistor",
    root: Annotated[Path, typer.Option("--root", help="Folder to put <category>/ (and the downloaded archive) in.")]
    = Path("data"),
    archive: Annotated[Optional[Path], typer.Option(
        "--archive", help="Use this archive on disk instead of downloading: the official "
                          "mvtec_anomaly_detection.tar.xz (checksum verified), or a per-category or own "
                          "archive with --sha256 or --no-verify.")] = None,
    sha256: Annotated[Optional[str], typer.Option(
        "--sha256", help="Expected sha256 of --archive, when it is not the official whole archive.")] = None,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Extract --archive without checking its sha256 (extraction is still safe).")] = False,
):
    """Download MVTec AD and extract one category safely into <root>/<category>.

    MVTec publishes a checksum only for the whole archive (4.9 GiB), so that is downloaded (resumable,
    sha256-verified) and kept in --root, so another category needs no second download.
    """
    target = download(category, root, archive=archive, sha256=sha256, verify=not no_verify, say=say)
    say(f"Ready: {target}. Next: defectsynth data check {target}")


@data_app.command("demo")
@friendly_errors
def data_demo_cmd(
    root: Annotated[Path, typer.Option("--root", help="Folder to write the demo category to.")] = Path("data/demo"),
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 1024,
    seed: SeedOpt = 0,
    kind: Annotated[str, typer.Option("--kind", help="transistor (a fixed part on a board, RGB), rotated (a "
                                                     "grayscale screw at any angle) or texture (a fabric, "
                                                     "defects anywhere).")] = "transistor",
):
    """Make a procedural stand-in for an MVTec AD category, in its layout, with masks (transistor-like by
    default)."""
    from defectsynth.data.demo import kind_of, make_demo

    defects, _render = kind_of(kind)
    target = make_demo(root, size=size, seed=seed, kind=kind)
    say(f"Wrote {target}: 213 train/good, 60 test/good, 10 each of {', '.join(defects)} with masks "
        f"({kind}, {size} x {size} px, seed {seed}). Next: defectsynth data check {target}")


@app.command("train-eval")
@friendly_errors
def train_eval_cmd(
    data: DataOpt = None,
    work: WorkOpt = None,
    arms: Annotated[str, typer.Option("--arms", help="Comma-separated training sets from <work>/training/ "
                                                     "to compare; 'original' is the unbalanced one.")]
    = "original,balanced",
    splits: Annotated[int, typer.Option("--splits", help="1: the workspace split; K > 1: K random splits "
                                                         "(synthetic images and arms rebuilt for each).")] = 1,
    seeds: Annotated[int, typer.Option("--seeds", help="Training seeds per split.")] = 1,
    first_seed: Annotated[int, typer.Option("--first-seed", help="The first training seed (more seeds for a "
                                                                 "comparison already run: --first-seed 2 "
                                                                 "--seeds 2 trains seeds 2 and 3).")] = 0,
    model: Annotated[Optional[str], typer.Option("--model", help="resnet18, resnet34, resnet50, efficientnet_b0, "
                                                                 "mobilenet_v3_small, ... (default: preset)")] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", help="auto (ImageNet when loadable, else from "
                                                                     "scratch), imagenet, none, or a .safetensors "
                                                                     "path (default: preset)")] = None,
    size: Annotated[Optional[int], typer.Option("--size", help="Image side in pixels (default: preset).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (default: preset).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda or mps.")] = "auto",
    preset: Annotated[str, typer.Option("--preset", help="default (practical on 2 CPU cores) or fast "
                                                         "(seconds; for tests).")] = "default",
    augment: Annotated[str, typer.Option("--augment", help="auto (measured from the good images: any angle for "
                                                           "a part that lies at any angle; mirrored for a mirror-"
                                                           "symmetric fixed part), fixed (small affine, never "
                                                           "mirrored) "
                                                           "or rotating (any angle).")] = "auto",
    val: Annotated[Optional[str], typer.Option("--val", help="How the real training shots are spent: fold (one "
                                                             "shot per type selects the epoch), none (all train, "
                                                             "fixed schedule) or kfold (folds choose the epoch "
                                                             "count, then a refit on all). Default: the measured "
                                                             "best (see presets.py).")] = None,
    reference: Annotated[str, typer.Option("--reference", help="auto (for a part fixed in one pose: "
                                                                         "the model also sees each image's "
                                                                         "difference to the closest good "
                                                                         "training images), on or off.")] = "auto",
):
    """Train a classifier per arm x split x seed, evaluate on held-out real images, write a report."""
    from defectsynth.train.run import train_eval

    ws = Workspace.open(data, work)
    _print_result(train_eval(ws, [a.strip() for a in arms.split(",") if a.strip()], splits=splits, seeds=seeds,
                             model=model, weights=weights, size=size, epochs=epochs, device=device, preset=preset,
                             say=say, augment=augment, val=val, reference=reference, first_seed=first_seed))


@app.command("predict")
@friendly_errors
def predict_cmd(
    model_dir: Annotated[Path, typer.Argument(help="A trained model: classifiers/<run>/<arm> of train-eval (its "
                                                   "first checkpoint), or one checkpoint folder.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for predictions.csv and overlays/.")] = Path("predictions"),
    device: Annotated[str, typer.Option("--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda or mps.")] = "auto",
):
    """Classify new images and map their defects: predictions.csv (label, class scores, defect area) and
    overlay PNGs."""
    from defectsynth.train.predict import predict

    result = predict(model_dir, inputs, out, device=device)
    flagged = sum(r["label"] != "good" for r in result.rows)
    say(f"{len(result.rows)} image(s), {flagged} flagged as defective, by {result.checkpoint}.")
    say(f"Wrote {result.csv}" + (f" and {len(result.overlays)} overlay(s) in {result.csv.parent / 'overlays'}"
                                  if result.overlays else " (no overlays: the model has no defect map)"))


@app.command("rebalance")
@friendly_errors
def rebalance_cmd(
    data: DataOpt = None,
    work: WorkOpt = None,
    strategy: Annotated[str, typer.Option("--strategy", help="none, oversample (repeat random reals), undersample "
                                                             "(drop random good images), synthetic (fill each defect "
                                                             "class up with synthetic images) or hybrid (synthetic "
                                                             "fill-up plus undersampling good).")] = "synthetic",
    target: Annotated[str, typer.Option("--target", help="Images per class: auto (the majority count; the minority "
                                                         "count for undersample, the mean for hybrid), sqrt (class "
                                                         "shares as sqrt of their counts) or a number.")] = "auto",
    methods: Annotated[Optional[str], typer.Option("--methods", help="Generators for the synthetic images, e.g. "
                                                                     "cutpaste,pose (default: each class's "
                                                                     "default), in equal shares.")] = None,
    mix: Annotated[Optional[str], typer.Option("--mix", help="Shares of the generators, e.g. "
                                                             "cutpaste=0.5,diffusion=0.5.")] = None,
    class_methods: Annotated[Optional[str], typer.Option("--class-methods", help="Generators for particular "
                                                         "classes, overriding --methods/--mix there, e.g. "
                                                         "misplaced=pose,damaged_case=diffusion.")] = None,
    real_ratio: Annotated[Optional[float], typer.Option("--real-ratio", help="Minimum share of real images per "
                                                                             "defect class, by repeating the "
                                                                             "reals.")] = None,
    name: Annotated[str, typer.Option("--name", help="Writes <work>/training/<name>.csv (+ .json).")] = "balanced",
    seed: SeedOpt = 0,
    sampler: Annotated[str, typer.Option("--sampler", help="Training-time sampler: none, weighted (classes "
                                                           "equally often) or sqrt.")] = "none",
    loss: Annotated[str, typer.Option("--loss", help="Training loss: ce, class-balanced, focal, logit-adjust or "
                                                     "balanced-softmax.")] = "ce",
    generate: Annotated[bool, typer.Option("--generate", help="Make missing synthetic images (with --methods, else each class's "
                                                              "default method) instead of stopping.")] = False,
):
    """Write <work>/training/<name>.csv, a rebalanced training set, and original.csv, the split as it is."""
    from defectsynth.balance import make_config, rebalance, render_table

    config = make_config(strategy=strategy, target=target, methods=methods, mix=mix, class_methods=class_methods,
                         real_ratio=real_ratio,
                         sampler=sampler, loss=loss, seed=seed, generate=generate)
    ws = Workspace.open(data, work)
    split = ws.split(say=say)
    result = rebalance(ws, split, config, name=name)
    console.print(render_table(result.table, title=f"{name}: {config.strategy}, target {config.target}"))
    if result.skipped:
        say(f"Left out {result.skipped} rows of {ws.synthetic_csv}: made from images outside this "
            "split's training set, or their file is gone.")
    say(f"Wrote {result.csv} ({len(result.rows)} rows; sampler {config.sampler}, loss {config.loss}) "
        f"and {ws.training_csv('original')}.")


@app.command("fit")
@friendly_errors
def fit_cmd(
    method: Annotated[str, typer.Option("--method", help="Learned generator to train: diffusion or gan.")],
    data: DataOpt = None,
    work: WorkOpt = None,
    preset: Annotated[str, typer.Option("--preset", help="auto (gpu when a CUDA GPU is visible, else cpu), cpu "
                                                         "(practical on 2 cores), gpu (quality) or tiny "
                                                         "(seconds; for tests).")] = "auto",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
    seed: SeedOpt = 0,
):
    """Train a learned generator on the split's train images into <work>/models/<method>/."""
    from defectsynth.synth.fitting import fit_generator

    ws = Workspace.open(data, work)
    split = ws.split(say=say)
    gen = fit_generator(ws, split, method, preset=preset, device=device, seed=seed)
    say(f"Trained {method} (preset {gen.preset}, {gen.device.type}) in {gen.fit_seconds:.0f} s; saved to "
        f"{ws.model_dir(method)}.")


@app.command("generate")
@friendly_errors
def generate_cmd(
    label: Annotated[str, typer.Option("--class", help="Defect class to synthesize, or 'all'.")],
    n: Annotated[int, typer.Option("--n", help="Images per class (a larger --n extends the set).")],
    method: Annotated[Optional[str], typer.Option("--method", help="cutpaste, pose, diffusion or gan (default: "
                                                                   "each class's default).")] = None,
    seed: SeedOpt = 0,
    data: DataOpt = None,
    work: WorkOpt = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes (same images for "
                                                       "any number; default: one per CPU, for 64+ images "
                                                       "each).")] = None,
):
    """Write synthetic defect images + masks to <work>/synthetic/<class>/<method>/ and record them in
    synthetic.csv; resumes and extends."""
    from defectsynth.synth.generate import check_options, generate

    ws = Workspace.open(data, work)
    check_options(ws, label, n)  # before a first split.json is written
    split = ws.split(say=say)
    labels = split.defect_classes if label == "all" else [label]
    for one in labels:
        rows = generate(ws, split, one, n, method=method, seed=seed, workers=workers, say=say)
        out = ws.synthetic_dir(one, rows[0].method)
        say(f"{one}: {len(rows)} images in {out} (preview: {out / 'preview.png'})")
    say(f"Provenance: {ws.synthetic_csv}")


@app.command("run")
@friendly_errors
def run_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/transistor.yaml.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Override the recipe's data folder.")] = None,
    work: Annotated[Optional[Path], typer.Option("--work", help="Override the recipe's workspace folder.")] = None,
):
    """Run a whole experiment from a recipe; steps whose outputs are current are skipped."""
    from defectsynth.pipeline import run_recipe
    from defectsynth.recipe import load_recipe

    _print_result(run_recipe(load_recipe(recipe), data=data, work=work, say=say))


@app.command("demo")
@friendly_errors
def demo_cmd(
    work: Annotated[Optional[Path], typer.Option("--work", help="Workspace folder.")] = None,
):
    """Make the procedural demo data and run recipes/demo.yaml on it (a few minutes on a laptop CPU)."""
    from defectsynth.pipeline import run_recipe
    from defectsynth.recipe import DEMO_RECIPE, load_recipe

    _print_result(run_recipe(load_recipe(DEMO_RECIPE), work=work, say=say))


def _print_result(result: dict | None) -> None:
    """The end of train-eval, run and demo: the summary table, which weights, and where the report is."""
    if result is None:
        return
    from defectsynth.report import rich_table

    console.print(rich_table(result["summary"]))
    say(f"Weights: {'; '.join(result['settings']['weights_notes'])}")
    say(f"Report: {result['report_dir'] / 'report.md'} (train-eval took {result['settings']['wall_s']:.0f} s)")


if __name__ == "__main__":
    app()
