"""Change-region cut-paste (synth/change.py, synth/cutpaste.py): a defect that moves a lead also clears the
lead's old place on the good image, nothing changes far from the defect, provenance names the reference, a
registered paste moves the defect unchanged, the pasted mask covers everything pasted, and a category that
cannot be registered falls back to the mask and says so."""

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
from defectsynth.synth.change import NEAR, ChangeFinder
from defectsynth.synth.cutpaste import REACH, CutPaste, snap
from defectsynth.synth.generate import generate
from defectsynth.synth.part import PartModel, _lab
from defectsynth.synth.preview import CUT_COLOR, write_preview


def _make(ws, method: str, n: int = 10) -> list[Row]:
    return generate(ws, ws.split(), "bent_lead", n, method=method, progress=False, say=lambda _m: None)


def _metal(image: np.ndarray) -> np.ndarray:
    """The demo's leads: bright and grey."""
    lab = _lab(image)
    return (lab[..., 0] > 150) & (np.hypot(lab[..., 1] - 128, lab[..., 2] - 128) < 20)


def _lead_lost_outside_mask(row: Row) -> int:
    """Pixels where the good image it was pasted on had a lead, the synthetic image has none, outside the
    (slightly grown) synthetic mask: the straight lead's old place."""
    image, good, mask = read_image(Path(row.path)), read_image(Path(row.parent_paths[1])), read_mask(Path(row.mask))
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return int((_metal(good) & ~_metal(image) & ~ring).sum())


def test_a_bent_lead_also_clears_the_straight_lead_it_replaces(workspace):
    changed = [_lead_lost_outside_mask(r) for r in _make(workspace, "cutpaste")]
    mask_only = [_lead_lost_outside_mask(r) for r in _make(workspace, "cutpaste-mask")]
    # the same draws (source, good image, placement) for both: only the region differs
    assert np.median(changed) >= 8, changed
    assert sum(c > 0 for c in changed) >= 6, changed
    assert np.median(mask_only) <= 2, mask_only


def test_nothing_changes_far_from_the_defect(workspace):
    for row in _make(workspace, "cutpaste"):
        image, good = read_image(Path(row.path)), read_image(Path(row.parent_paths[1]))
        mask = read_mask(Path(row.mask))
        side = min(mask.shape)
        reach = round((NEAR + REACH + 0.05) * side)  # the change region, what it overwrites, and the blend
        near = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2))
        differs = np.abs(image.astype(int) - good.astype(int)).max(axis=-1) > 12
        assert not (differs & (near == 0)).any(), row.path


def test_provenance_names_the_reference_and_what_was_cut(workspace):
    split = workspace.split()
    goods = {r.path for r in split.rows if r.label == GOOD and r.split == "train"}
    for row in _make(workspace, "cutpaste", n=3):
        source, good, reference = row.parent_paths
        assert source in {r.path for r in split.train_defects("bent_lead")}
        assert good in goods and reference in goods
        assert '"region_used": "change"' in row.params and '"reference"' in row.params


@pytest.mark.parametrize("method", ["cutpaste", "cutpaste-bend"])
def test_same_seed_same_bytes(workspace, tmp_path, method):
    from defectsynth.workspace import Workspace

    other = Workspace.open(workspace.data, tmp_path / "again")
    a, b = _make(workspace, method, n=4), _make(other, method, n=4)
    assert [Path(r.path).read_bytes() for r in a] == [Path(r.path).read_bytes() for r in b]


def _texture(root: Path, n: int = 8, size: int = 64) -> list[Row]:
    """Good images and one defect of a texture: no part, nothing to register to."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = root / f"good{i}.png"
        write_png(path, rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        rows.append(Row(path=str(path), label=GOOD, split="train", source="real", method="real"))
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[20:30, 20:40] = 255
    write_png(root / "d.png", image)
    write_png(root / "d_mask.png", mask)
    rows.append(Row(path=str(root / "d.png"), label="scratch", split="train", source="real", method="real",
                    mask=str(root / "d_mask.png")))
    return rows


def test_a_texture_falls_back_to_the_mask_and_says_so(tmp_path):
    rows = _texture(tmp_path)
    gen = CutPaste()
    gen.fit(rows)
    note = gen.notes("scratch")
    assert sum("only their masks are pasted" in line for line in note) == 1
    sample = next(gen.sample("scratch", 1, np.random.default_rng(0)))
    assert sample.params["region_used"] == "mask" and sample.params["paste_used"] == "augmented"
    plain = CutPaste(region="mask")
    plain.fit(rows)
    same = next(plain.sample("scratch", 1, np.random.default_rng(0)))
    assert (sample.image == same.image).all() and (sample.mask == same.mask).all()


def test_change_finder_flags_unregistrable_images(tmp_path):
    rows = _texture(tmp_path)
    goods = [r.path for r in rows if r.label == GOOD]
    finder = ChangeFinder(goods, PartModel.from_paths(goods))
    change = finder.find(read_image(Path(rows[-1].path)), read_mask(Path(rows[-1].mask)))
    assert not change.reliable
    assert (change.region == read_mask(Path(rows[-1].mask))).all()


@pytest.mark.parametrize("with_cut", [True, False])
def test_preview_outlines_what_was_cut(workspace, tmp_path, with_cut):
    split = workspace.split()
    real = split.train_defects("bent_lead")[:1]
    mask = read_mask(Path(real[0].mask))
    cut = {real[0].path: cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0} if with_cut else None
    write_preview(tmp_path / "p.png", real, [], cut)
    sheet = read_image(tmp_path / "p.png")
    assert (sheet == CUT_COLOR).all(axis=-1).any() == with_cut


def test_snap_moves_a_patch_to_where_its_surroundings_match():
    """A patch cut at (40, 60) of a structured image, region in its middle, offered 3 px down and 2 px left:
    snap finds where its surroundings line up again; without a search radius it stays where offered."""
    rng = np.random.default_rng(0)
    target = cv2.GaussianBlur(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8), (0, 0), 2)
    patch = target[40:80, 60:110].copy()
    region = np.zeros(patch.shape[:2], bool)
    region[12:28, 18:32] = True
    patch[region] = 255  # the defect itself matches nothing in the target
    assert snap(target, patch, ~region, 43, 58, radius=6) == (40, 60)
    assert snap(target, patch, ~region, 43, 58, radius=0) == (43, 58)
    assert snap(target, patch, ~region, 43, 58, radius=1) != (40, 60)  # only as far as the radius allows

    stripes = np.tile(np.repeat(np.arange(0, 250, 25, dtype=np.uint8), 8)[None, :], (160, 2))[:, :160]
    stripes = np.dstack([stripes] * 3)  # vertical stripes: nothing tells one height from another
    patch = stripes[60:100, 40:90].copy()
    patch[region] = 255
    assert snap(stripes, patch, ~region, 60, 40, radius=12) == (60, 40)  # stays where it was offered


def _seam(rows: list[Row]) -> list[float]:
    """How much each synthetic image differs from the good image it was pasted on, outside the defect."""
    return [np.abs(read_image(Path(r.path)).astype(int) - read_image(Path(r.parent_paths[1])).astype(int))
            .max(axis=-1)[~read_mask(Path(r.mask))].mean() for r in rows]


def test_snapped_pastes_leave_less_seam_beside_the_defect(workspace):
    """Same draws with and without snap (both augmented): snapped bent leads land where their surroundings
    match, so the image differs less from the good one it was pasted on, outside the defect."""
    plain, snapped = _seam(_make(workspace, "cutpaste-augmented")), _seam(_make(workspace, "cutpaste-snap"))
    assert np.mean(snapped) < np.mean(plain), (plain, snapped)
    assert sum(s < p for s, p in zip(snapped, plain, strict=True)) >= 6, (plain, snapped)


def test_a_registered_paste_moves_the_defect_unchanged(workspace):
    """No rotation, scale, warp or re-lighting: the synthetic mask is the source's mask moved by whole pixels,
    and inside it the synthetic image shows the source's own pixels."""
    masks = {r.path: r.mask for r in workspace.split().train_defects("bent_lead")}
    rows = _make(workspace, "cutpaste")
    for row in rows:
        assert '"region_used": "change"' in row.params and '"paste_used": "registered"' in row.params
        assert '"blend_used": "alpha"' in row.params
        source = read_image(Path(row.parent_paths[0]))
        src_mask, out_mask = read_mask(Path(masks[row.parent_paths[0]])), read_mask(Path(row.mask))
        (sy, sx), (oy, ox) = (np.argwhere(m).min(axis=0) for m in (src_mask, out_mask))
        dy, dx = oy - sy, ox - sx
        assert src_mask.sum() == out_mask.sum()
        assert (np.roll(src_mask, (dy, dx), axis=(0, 1)) == out_mask).all()
        inner = cv2.erode(out_mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        moved = np.roll(source, (dy, dx), axis=(0, 1))
        diff = np.abs(read_image(Path(row.path)).astype(int) - moved.astype(int))[inner]
        assert diff.max() <= 2, row.path


def test_an_unknown_paste_is_a_one_line_error():
    with pytest.raises(DefectsynthError, match="cutpaste paste 'registerd' is unknown; use one of: registered, augmented"):
        CutPaste(paste="registerd")


def test_the_pasted_mask_covers_everything_pasted(workspace):
    """cutpaste-pasted-mask makes the same images as cutpaste (same draws); its mask holds the annotated defect
    and the good part's structure the paste covered (the straight lead's old place), and every pixel that
    differs from the good image, but for the blend's feathered edge."""
    annotated, pasted = _make(workspace, "cutpaste"), _make(workspace, "cutpaste-pasted-mask")
    for a, p in zip(annotated, pasted, strict=True):
        image, good = read_image(Path(p.path)), read_image(Path(p.parent_paths[1]))
        assert (image == read_image(Path(a.path))).all()
        small, large = read_mask(Path(a.mask)), read_mask(Path(p.mask))
        assert (large >= small).all() and large.sum() > small.sum()
        edge = cv2.dilate(large.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        differs = np.abs(image.astype(int) - good.astype(int)).max(axis=-1) > 12
        assert not (differs & ~edge).any(), p.path
    assert np.median([_lead_lost_outside_mask(r) for r in annotated]) >= 8
    assert max(_lead_lost_outside_mask(r) for r in pasted) == 0


def test_the_demo_leads_repeat_with_the_board_across_only(demo_root, tmp_path):
    """The demo transistor's three leads sit one board pitch apart side by side: the part model finds that
    step left and right (not up or down); a texture has no part and no step."""
    goods = sorted(str(p) for p in (demo_root / "train" / "good").glob("*.png"))
    part = PartModel.from_paths(goods)
    steps = part.repeat_steps
    pitch = part.periods[1]
    assert pitch and sorted(steps) == [(0, -pitch), (0, pitch)], (steps, part.periods)
    texture = [r.path for r in _texture(tmp_path) if r.label == GOOD]
    assert PartModel.from_paths(texture).repeat_steps == []


def test_a_repeat_paste_moves_the_defect_whole_onto_another_lead(workspace):
    """cutpaste-repeat makes registered pastes of which some are moved one board pitch sideways: the mask is
    still the source's moved by whole pixels, and a moved bend lands on another of the good part's leads,
    never on bare board."""
    masks = {r.path: r.mask for r in workspace.split().train_defects("bent_lead")}
    rows = _make(workspace, "cutpaste-repeat", n=16)
    steps = [tuple(json.loads(r.params)["repeat_step"]) for r in rows]
    moved = [r for r, s in zip(rows, steps, strict=True) if s != (0, 0)]
    assert 4 <= len(moved) <= 12, steps
    part = PartModel.from_paths([r.path for r in workspace.split().rows if r.label == GOOD and r.split == "train"])
    for row in moved:
        src_mask, out_mask = read_mask(Path(masks[row.parent_paths[0]])), read_mask(Path(row.mask))
        (sy, sx), (oy, ox) = (np.argwhere(m).min(axis=0) for m in (src_mask, out_mask))
        assert (np.roll(src_mask, (oy - sy, ox - sx), axis=(0, 1)) == out_mask).all()
        assert abs(ox - sx) >= part.periods[1] // 2, (row.params, part.periods)
        # the good image had a lead where the moved bend went
        near = cv2.dilate(out_mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        assert (_metal(read_image(Path(row.parent_paths[1]))) & near).sum() >= 10, row.path



def test_a_bend_paste_turns_the_defect_about_where_it_leaves_the_part(workspace):
    """cutpaste-bend turns a registered bend by up to its angle, recorded per image: the mask is the source's,
    turned (about as large, and not where it was once the turn is more than a few degrees); the unturned
    generator's masks differ from them."""
    masks = {r.path: r.mask for r in workspace.split().train_defects("bent_lead")}
    rows = _make(workspace, "cutpaste-bend", n=12)
    angles = [json.loads(r.params)["bend_deg"] for r in rows]
    assert all(abs(a) <= 35 for a in angles) and len(set(angles)) == len(angles), angles
    for row, angle in zip(rows, angles, strict=True):
        src_mask, out_mask = read_mask(Path(masks[row.parent_paths[0]])), read_mask(Path(row.mask))
        assert 0.6 < out_mask.sum() / src_mask.sum() < 1.6, row.path
        if abs(angle) >= 10:
            assert (src_mask & out_mask).sum() < 0.9 * src_mask.sum(), (row.path, angle)
    straight = _make(workspace, "cutpaste", n=12)
    assert [read_mask(Path(r.mask)).sum() for r in straight] != [read_mask(Path(r.mask)).sum() for r in rows]


def test_damage_to_the_case_never_moves_a_pitch_over(workspace):
    rows = generate(workspace, workspace.split(), "damaged_case", 8, method="cutpaste-repeat", progress=False,
                    say=lambda _m: None)
    assert [json.loads(r.params)["repeat_step"] for r in rows] == [[0, 0]] * 8
