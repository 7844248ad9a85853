"""Procedural lead defects (synth/leads.py, synth/leaddefect.py) on the demo: the leads are found one by one,
a bend turns one lead's piece so that its old place and hole become bare board, a cut takes the piece away and
marks where it was, nothing changes away from the leads, provenance names the good image only, same seed
gives the same bytes, and a category without leads is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import read_image, read_mask, write_png
from defectsynth.synth.generate import generate
from defectsynth.synth.leaddefect import LeadBend, LeadCut
from defectsynth.synth.leads import find_leads
from defectsynth.synth.part import PartModel, _lab


def _make(ws, n: int = 8):
    return generate(ws, ws.split(), "bent_lead", n, method="lead-bend", progress=False, say=lambda _m: None)


def _metal(image: np.ndarray) -> np.ndarray:
    """The demo's leads: bright and grey."""
    lab = _lab(image)
    return (lab[..., 0] > 150) & (np.hypot(lab[..., 1] - 128, lab[..., 2] - 128) < 20)


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    return cv2.dilate(mask.astype(np.uint8), disk) > 0


def test_the_demo_leads_are_found_one_by_one(workspace):
    goods = [r.path for r in workspace.split().rows if r.label == GOOD and r.split == "train"]
    part = PartModel.from_paths(goods)
    counts = []
    for path in goods:
        image = read_image(Path(path))
        leads = find_leads(part, image)
        counts.append(len(leads.masks))
        for lead in leads.masks:
            assert not (lead & leads.body).any()
        # the bare board has no lead metal left where the leads were
        if leads.masks:
            assert _metal(leads.board)[np.any(leads.masks, axis=0)].mean() < 0.1, path
    assert np.median(counts) == 3, counts


def test_a_bend_moves_metal_off_the_lead_and_onto_the_board(workspace):
    """Turned by 30-45 degrees (enough to clear a 128 px lead's width), every image: lead metal of the good
    image is gone outside the grown mask (the piece's old place is bare board), and the mask shows metal
    where the good image had none (the piece in its new place)."""
    gen = LeadBend(min_deg=30, max_deg=45)
    gen.fit([r for r in workspace.split().rows if r.split == "train"])
    for sample in gen.sample("bent_lead", 8, np.random.default_rng(0)):
        good = read_image(Path(sample.parents[0]))
        lost = _metal(good) & ~_metal(sample.image) & ~_grow(sample.mask, 2)
        new = _metal(sample.image) & ~_metal(good) & sample.mask
        assert lost.sum() >= 8 and new.sum() >= 8, (sample.params, int(lost.sum()), int(new.sum()))
        # the turned piece joins what stays of its lead: no gap between them
        stub = _metal(sample.image) & ~sample.mask
        assert (stub & _grow(sample.mask, 1)).any(), sample.params


def test_a_cut_takes_the_piece_away_and_marks_where_it_was(workspace):
    gen = LeadCut()
    gen.fit([r for r in workspace.split().rows if r.split == "train"])
    for sample in gen.sample("cut_lead", 8, np.random.default_rng(0)):
        good = read_image(Path(sample.parents[0]))
        lost = _metal(good) & ~_metal(sample.image)
        assert lost.sum() >= 8, sample.params
        assert (lost & ~sample.mask).sum() <= 0.05 * lost.sum(), (sample.params, int(lost.sum()))
        assert (_metal(sample.image) & ~_metal(good)).sum() <= 4, sample.params
        assert "bend_deg" not in sample.params and 0.2 <= sample.params["at_share"] <= 0.7


def test_nothing_changes_away_from_the_leads(workspace):
    goods = [r.path for r in workspace.split().rows if r.label == GOOD and r.split == "train"]
    part = PartModel.from_paths(goods)
    for row in _make(workspace):
        image, good = read_image(Path(row.path)), read_image(Path(row.parent_paths[0]))
        mask = read_mask(Path(row.mask))
        leads = find_leads(part, good)
        side = min(mask.shape)
        # each lead's end hole, and the blend around what was rebuilt
        near = _grow(np.any(leads.masks, axis=0) | mask, round(0.1 * side))
        differs = np.abs(image.astype(int) - good.astype(int)).max(axis=-1) > 12
        assert not (differs & ~near).any(), row.path


def test_provenance_names_the_good_image_and_the_draws(workspace):
    goods = {r.path for r in workspace.split().rows if r.label == GOOD and r.split == "train"}
    rows = _make(workspace, n=6)
    for row in rows:
        assert len(row.parent_paths) == 1 and row.parent_paths[0] in goods
        params = json.loads(row.params)
        assert 15 <= abs(params["bend_deg"]) <= 45 and 0.05 <= params["at_share"] <= 0.35
    assert len({json.loads(r.params)["bend_deg"] for r in rows}) == len(rows)


def test_same_seed_same_bytes(workspace, tmp_path):
    from defectsynth.workspace import Workspace

    other = Workspace.open(workspace.data, tmp_path / "again")
    a, b = _make(workspace, n=4), _make(other, n=4)
    assert len(a) == len(b) == 4
    assert [Path(r.path).read_bytes() for r in a] == [Path(r.path).read_bytes() for r in b]
    assert [Path(r.mask).read_bytes() for r in a] == [Path(r.mask).read_bytes() for r in b]


def test_a_category_without_leads_is_a_one_line_error(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):  # a texture: no part, no leads
        path = tmp_path / f"good{i}.png"
        write_png(path, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        rows.append(Row(path=str(path), label=GOOD, split="train", source="real", method="real"))
    with pytest.raises(DefectsynthError, match="leads one by one on only 0 of .*use --method cutpaste"):
        LeadBend().fit(rows)


@pytest.mark.parametrize("make, kwargs, option", [
    (LeadBend, {"min_deg": 50, "max_deg": 10}, "lead-bend min_deg"),
    (LeadBend, {"at_from": 0.6, "at_to": 0.2}, "lead-bend at_from"),
    (LeadCut, {"at_from": 0.9, "at_to": 1.5}, "lead-cut at_from")])
def test_bad_settings_are_one_line_errors(make, kwargs, option):
    with pytest.raises(DefectsynthError, match=option):
        make(**kwargs)


def test_a_lead_cut_always_cuts():
    assert LeadCut(cut=False).config["cut"] is True


@pytest.mark.real
def test_the_real_transistor_leads_are_found_one_by_one(real_root):
    goods = sorted(str(p) for p in (real_root / "train" / "good").glob("*.png"))
    part = PartModel.from_paths(goods)
    counts = [len(find_leads(part, read_image(Path(p))).masks) for p in goods[::10]]
    assert counts.count(3) >= 0.8 * len(counts), counts
