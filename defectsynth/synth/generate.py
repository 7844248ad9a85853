"""Make synthetic defect images into the workspace, resumably, and record where each came from.

Image i of (class, method, seed) is <work>/synthetic/<class>/<method>/<seed>_<i:05d>.png (+ _mask.png)
and is drawn with its own rng, np.random.default_rng([seed, i]), so it is the same whether it was
made in one run or after an interruption, by one worker or by several. Learned generators sample in
blocks of BLOCK images (one rng per block) so a GPU sees whole batches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from defectsynth.data.check import require_usable_defects
from defectsynth.data.guard import check_no_leakage, train_rows
from defectsynth.data.layout import defect_types
from defectsynth.data.manifest import Row, read_manifest, write_manifest
from defectsynth.data.split import Split
from defectsynth.errors import DefectsynthError
from defectsynth.io import remove_stale_temps, write_png
from defectsynth.synth.base import Generator
from defectsynth.synth.preview import PREVIEW, write_preview
from defectsynth.synth.registry import create_generator
from defectsynth.workers import auto_workers, worker_pool
from defectsynth.workspace import Workspace

DEFAULT_METHODS: dict[str, str] = {"misplaced": "pose"}
BLOCK = 16  # images per rng block for learned generators
SAVE_EVERY = 50  # rows recorded in synthetic.csv at least this often, so an interrupted run keeps its work


def default_method(label: str) -> str:
    return DEFAULT_METHODS.get(label, "cutpaste")


def read_synthetic(ws: Workspace) -> list[Row]:
    return read_manifest(ws.synthetic_csv) if ws.synthetic_csv.is_file() else []


def image_path(ws: Workspace, label: str, method: str, seed: int, i: int) -> Path:
    return ws.synthetic_dir(label, method) / f"{seed}_{i:05d}.png"


def mask_of(path: Path) -> Path:
    return path.with_name(f"{path.stem}_mask.png")


def check_options(ws: Workspace, label: str, n: int) -> None:
    """--class (a defect class or all) and --n, checked before a command writes anything, split.json included."""
    _check_class_and_n(label, n, defect_types(ws.data), ws.data, allow_all=True)


def _check_class_and_n(label: str, n: int, classes: list[str], root: Path, allow_all: bool = False) -> None:
    if label not in classes and not (allow_all and label == "all"):
        raise DefectsynthError(f"--class {label!r} is not a defect class of {root}; use one of: "
                               f"{', '.join(classes)} (or all)")
    if n <= 0:
        raise DefectsynthError(f"--n {n}: ask for 1 or more images")


def _check_request(split: Split, label: str, n: int) -> None:
    _check_class_and_n(label, n, split.defect_classes, split.data_root)
    if not split.train_defects(label):
        raise DefectsynthError(f"{label} has no train-split real defects in the split; re-run 'defectsynth split' "
                               "with --shots 1 or more")


# the last fit of each method in this process, by what it was fitted on: a recipe generates every defect
# class of a split in turn, and cutpaste's fit (part model, poses, every source's change region) is the
# same for all of them; on real transistor a class's 213 images took 20-23 s with its own fit, 8-10 s without
_FITTED: dict[str, tuple[tuple, Generator]] = {}


def _fit(ws: Workspace, split: Split, method: str, progress: bool, say) -> Generator:
    gen = create_generator(method)
    if gen.trainable:
        from defectsynth.synth.fitting import load_or_fit

        return load_or_fit(ws, split, method, progress=progress, say=say)
    rows = train_rows(split, f"generate --method {method}")
    key = tuple(_stamp(r) for r in rows)
    if method not in _FITTED or _FITTED[method][0] != key:
        gen.fit(rows)
        _FITTED[method] = (key, gen)
    return _FITTED[method][1]


def _stamp(row: Row) -> tuple:
    """A training row as a fit sees it: its label and its files as they are now (an edited file refits)."""
    files = [Path(row.path)] + ([Path(row.mask)] if row.mask else [])
    return (row.label, *(_file_stamp(f) for f in files))


def _file_stamp(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:  # a missing file: the fit itself reports it, in one line
        return (str(path), None, None)
    return (str(path), st.st_mtime_ns, st.st_size)


# worker state: the fitted generator, set once per process
_GEN: Generator | None = None


def _init_worker(gen: Generator) -> None:
    global _GEN
    _GEN = gen


def _make_block(job: tuple) -> list[Row]:
    """Draw block `b` and write the images of `wanted` (indices) in it; return their rows."""
    ws_root, label, method, seed, b, size, wanted = job
    rng = np.random.default_rng([seed, b])
    rows = []
    for k, sample in enumerate(_GEN.sample(label, size, rng)):
        i = b * size + k
        if i not in wanted:
            continue
        path = Path(ws_root) / "synthetic" / label / method / f"{seed}_{i:05d}.png"
        if not sample.mask.any():
            raise DefectsynthError(f"{method} made an empty mask for {label} image {i}; report this as a bug")
        write_png(mask_of(path), sample.mask)
        write_png(path, sample.image)
        params = {k2: v for k2, v in sample.params.items() if k2 not in ("source", "good")}
        rows.append(Row(path=str(path), label=label, split="train", source="synthetic", method=method,
                        parents=";".join(sample.parents), mask=str(mask_of(path)), seed=str(seed),
                        params=json.dumps({"index": i, **params}, sort_keys=True, default=str)))
    return rows


def _record(ws: Workspace, split: Split, new: list[Row]) -> None:
    if not new:
        return
    check_no_leakage(new, split, "generate")
    fresh = {r.path for r in new}
    keep = [r for r in read_synthetic(ws) if r.path not in fresh]
    write_manifest(ws.synthetic_csv, keep + sorted(new, key=lambda r: r.path))


def generate(ws: Workspace, split: Split, label: str, n: int, method: str | None = None, seed: int = 0,
             workers: int | None = None, progress: bool = True, say=print) -> list[Row]:
    """Make sure images 0..n-1 of (label, method, seed) exist and are in synthetic.csv; return their rows.
    `workers`: processes for a generator that is not trained (the same images for any number); None:
    auto_workers()."""
    _check_request(split, label, n)
    method = method or default_method(label)
    for folder in (ws.synthetic_dir(label, method), ws.synthetic_csv.parent):
        remove_stale_temps(folder)  # left by a killed run; never a finished file
    paths = [image_path(ws, label, method, seed, i) for i in range(n)]
    # rows made from another split's train images are stale: remade rather than reused
    allowed = {r.path for r in split.real_rows("train")}
    known = {r.path: r for r in read_synthetic(ws)
             if r.method == method and r.label == label and set(r.parent_paths) <= allowed}
    missing = [i for i, p in enumerate(paths) if not (str(p) in known and p.is_file() and mask_of(p).is_file())]
    gen = None
    if missing:
        require_usable_defects(split.train_defects(label))
        gen = _fit(ws, split, method, progress, say)
        for note in gen.notes(label):
            say(note)
        size = BLOCK if gen.trainable else 1
        workers = auto_workers(len(missing)) if workers is None else workers
        blocks: dict[int, list[int]] = {}
        for i in missing:
            blocks.setdefault(i // size, []).append(i)
        jobs = [(str(ws.root), label, method, seed, b, size, frozenset(wanted)) for b, wanted in blocks.items()]
        new: list[Row] = []
        columns = (TextColumn(f"{label}/{method}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task("generate", total=len(missing))
            try:
                if workers > 1 and not gen.trainable:
                    with worker_pool(workers, _init_worker, gen) as pool:
                        for rows in pool.map(_make_block, jobs, chunksize=4):
                            new += rows
                            bar.advance(task, len(rows))
                            if len(new) % SAVE_EVERY < len(rows):
                                _record(ws, split, new)
                else:
                    _init_worker(gen)
                    for job in jobs:
                        rows = _make_block(job)
                        new += rows
                        bar.advance(task, len(rows))
                        if len(new) % SAVE_EVERY < len(rows):
                            _record(ws, split, new)
            finally:
                _record(ws, split, new)
        known.update({r.path: r for r in new})
    rows = [known[str(p)] for p in paths]
    if missing or not (ws.synthetic_dir(label, method) / PREVIEW).is_file():
        write_preview(ws.synthetic_dir(label, method) / PREVIEW, split.train_defects(label), rows,
                      gen.source_regions(label) if gen is not None else None)
    return rows
