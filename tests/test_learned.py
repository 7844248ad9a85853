"""The learned inpainting generators (diffusion, gan), trained for a few steps with the tiny preset."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from defectsynth.cli import app
from defectsynth.data.guard import train_rows
from defectsynth.data.split import make_split
from defectsynth.errors import DefectsynthError
from defectsynth.io import read_image, write_png
from defectsynth.synth.fitting import fit_generator, load_or_fit
from defectsynth.synth.inpaint_data import Box, crop_box, cut, inpaint_input, paste_back, random_mask
from defectsynth.synth.registry import create_generator, list_generators
from defectsynth.workspace import Workspace

METHODS = ["diffusion", "gan"]


@pytest.fixture(scope="module")
def fitted(demo_root, tmp_path_factory):
    """One tiny model per method, trained and saved on the demo split."""
    ws = Workspace.open(demo_root, tmp_path_factory.mktemp("learned") / "work")
    split = ws.split(say=lambda _m: None)
    gens = {m: fit_generator(ws, split, m, preset="tiny", device="cpu", progress=False) for m in METHODS}
    return ws, split, gens


def _bytes(samples) -> list[bytes]:
    return [s.image.tobytes() + s.mask.tobytes() for s in samples]


def test_registered():
    assert set(METHODS) <= set(list_generators())


@pytest.mark.parametrize("method", METHODS)
def test_samples_have_the_good_image_shape_and_train_parents(fitted, method):
    ws, split, gens = fitted
    train = {r.path for r in split.real_rows("train")}
    samples = list(gens[method].sample("bent_lead", 3, np.random.default_rng(0)))
    assert len(samples) == 3
    for s in samples:
        good = read_image(s.params["good"])
        assert s.image.shape == good.shape and s.image.dtype == np.uint8
        assert s.mask.shape == good.shape[:2] and s.mask.dtype == bool and s.mask.any()
        assert s.label == "bent_lead" and set(s.parents) <= train


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_bytes(fitted, method):
    gen = fitted[2][method]
    a = _bytes(gen.sample("cut_lead", 2, np.random.default_rng(5)))
    b = _bytes(gen.sample("cut_lead", 2, np.random.default_rng(5)))
    c = _bytes(gen.sample("cut_lead", 2, np.random.default_rng(6)))
    assert a == b and a != c


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip(fitted, method):
    ws, split, gens = fitted
    folder = ws.model_dir(method)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    loaded = create_generator(method, preset="tiny", device="cpu", identity=split.identity(), progress=False)
    loaded.load(folder)
    assert loaded.classes == gens[method].classes
    assert (_bytes(loaded.sample("damaged_case", 2, np.random.default_rng(1)))
            == _bytes(gens[method].sample("damaged_case", 2, np.random.default_rng(1))))


@pytest.mark.parametrize("method", METHODS)
def test_pixels_outside_the_mask_are_the_good_image(fitted, method):
    for s in fitted[2][method].sample("misplaced", 2, np.random.default_rng(2)):
        good = read_image(s.params["good"])
        assert np.array_equal(s.image[~s.mask], good[~s.mask])
        assert not np.array_equal(s.image[s.mask], good[s.mask])


def test_random_masks_are_never_empty():
    rng = np.random.default_rng(0)
    assert all(random_mask(32, 48, rng).any() for _ in range(3000))


def test_mask_convention_white_is_the_hole():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:30, 25:40] = True
    box = crop_box(mask)
    assert box.top <= 20 and box.top + box.side >= 30 and box.left <= 25 and box.left + box.side >= 40
    known, m = cut(image, mask, box, 16)
    assert known.shape == (3, 16, 16) and m.shape == (1, 16, 16) and m.any() and not m.all()
    x = inpaint_input(torch.zeros(1, 3, 16, 16), torch.from_numpy(m)[None], torch.from_numpy(known)[None])
    assert x.shape == (1, 7, 16, 16)
    assert torch.all(x[0, 4:][:, torch.from_numpy(m[0]) > 0] == 0)  # the hole is hidden from the model
    white = paste_back(image, mask, Box(0, 0, 64), np.ones((3, 16, 16), np.float32))
    assert np.all(white[mask] == 255) and np.array_equal(white[~mask], image[~mask])
    gray = paste_back(image[:, :, 0], mask, Box(0, 0, 64), -np.ones((1, 16, 16), np.float32))
    assert gray.ndim == 2 and np.all(gray[mask] == 0)


@pytest.mark.parametrize("method", METHODS)
def test_a_model_for_one_split_is_refused_for_another(fitted, method):
    ws, _split, _gens = fitted
    other = make_split(ws.data, shots=2, protocol="random", seed=1)
    gen = create_generator(method, preset="tiny", device="cpu", identity=other.identity(), progress=False)
    with pytest.raises(DefectsynthError, match="trained on .*fit --method"):
        gen.load(ws.model_dir(method))


def test_load_or_fit_refits_for_another_split(demo_root, tmp_path):
    ws = Workspace.open(demo_root, tmp_path / "work")
    split = ws.split(say=lambda _m: None)
    said = []
    first = load_or_fit(ws, split, "gan", preset="tiny", device="cpu", progress=False, say=said.append)
    assert "training one now" in said[-1]
    again = load_or_fit(ws, split, "gan", device="cpu", progress=False, say=said.append)
    assert len(said) == 1 and again.preset == "tiny"  # loaded, with the saved preset
    other = make_split(ws.data, shots=2, protocol="random", seed=1)
    refit = load_or_fit(ws, other, "gan", device="cpu", progress=False, say=said.append)
    assert "not on this workspace's split" in said[-1] and refit.identity == other.identity() != first.identity


def test_unknown_preset_and_untrained_are_user_errors(demo_root, tmp_path):
    with pytest.raises(DefectsynthError, match="--preset"):
        create_generator("diffusion", preset="huge")
    gen = create_generator("gan", preset="tiny", progress=False)
    with pytest.raises(DefectsynthError, match="not trained"):
        next(gen.sample("bent_lead", 1, np.random.default_rng(0)))
    with pytest.raises(DefectsynthError, match="no trained gan model"):
        gen.load(tmp_path / "nothing")
    ws = Workspace.open(demo_root, tmp_path / "w")
    split = ws.split(say=lambda _m: None)
    goods_only = [r for r in train_rows(split, "test") if r.label == "good"]
    with pytest.raises(DefectsynthError, match="defects with masks"):
        gen.fit(goods_only)
    black = tmp_path / "black_mask.png"
    write_png(black, np.zeros((128, 128), bool))
    rows = [replace(r, mask=str(black)) if r.mask else r for r in train_rows(split, "test")]
    with pytest.raises(DefectsynthError, match="black_mask.png: the mask has no white"):
        gen.fit(rows)


def test_cli_fit(demo_root, tmp_path):
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["fit", "--method", "diffusion", "--preset", "tiny", "--device", "cpu",
                                      "--data", str(demo_root), "--work", str(work)])
    assert result.exit_code == 0, result.output
    assert "Trained diffusion (preset tiny" in result.output
    assert (work / "models" / "diffusion" / "model.safetensors").is_file()
    bad = CliRunner().invoke(app, ["fit", "--method", "diffusion", "--preset", "huge",
                                   "--data", str(demo_root), "--work", str(work)])
    assert bad.exit_code == 2 and "--preset 'huge'" in bad.output


@pytest.mark.parametrize("method", METHODS)
def test_generate_runner_reuses_the_fitted_model(fitted, method):
    from defectsynth.synth.generate import generate

    ws, split, _gens = fitted
    said = []
    rows = generate(ws, split, "cut_lead", 3, method=method, seed=0, progress=False, say=said.append)
    assert not said  # loaded from <work>/models/<method>, not trained again
    assert [r.method for r in rows] == [method] * 3 and all(r.source == "synthetic" for r in rows)
    for r in rows:
        assert read_image(r.path).shape == read_image(r.parent_paths[0]).shape


def test_a_loaded_diffusion_model_takes_only_sampling_settings(fitted):
    ws, split, _gens = fitted
    gen = create_generator("diffusion", preset="tiny", device="cpu", identity=split.identity(), progress=False,
                           steps=2, guidance=1.0, lr=0.5)
    gen.load(ws.model_dir("diffusion"))
    assert gen.settings["steps"] == 2 and gen.settings["guidance"] == 1.0 and gen.settings["lr"] == 1e-3
    (sample,) = gen.sample("bent_lead", 1, np.random.default_rng(0))
    assert sample.params["guidance"] == 1.0 and sample.params["steps"] == 2 and sample.mask.any()


def test_diffusion_keeps_the_known_context_along_the_denoising_loop(fitted):
    gen = fitted[2]["diffusion"]
    g = torch.Generator().manual_seed(0)
    known = torch.rand((2, 3, 16, 16), generator=g) * 2 - 1
    mask = torch.zeros((2, 1, 16, 16))
    mask[:, :, 4:10, 5:12] = 1
    with torch.no_grad():
        out = gen.inpaint(known, mask, torch.tensor([1, 2]), torch.randn((2, 3, 16, 16), generator=g))
    assert torch.equal(out * (1 - mask), known * (1 - mask))
    assert out.shape == known.shape and out.abs().max() <= 1
