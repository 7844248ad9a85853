"""Shared fixtures: a small procedural demo category the tests make themselves (no real data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

REAL_DATA = Path(os.environ.get("DEFECTSYNTH_REAL_DATA",
                                Path(__file__).resolve().parents[2] / "shared/data/mvtec_ad_512/transistor"))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small demo category in MVTec layout: 24 train/good, 8 test/good, 6 per defect type, 128 px."""
    from defectsynth.data.demo import make_demo

    root = tmp_path_factory.mktemp("data") / "demo"
    make_demo(root, size=128, seed=0, n_train_good=24, n_test_good=8, n_per_defect=6, progress=False)
    return root


@pytest.fixture
def workspace(demo_root, tmp_path):
    """A fresh workspace on the demo category, with the default split written."""
    from defectsynth.workspace import Workspace

    ws = Workspace.open(demo_root, tmp_path / "work")
    ws.split(say=lambda _msg: None)
    return ws


@pytest.fixture(scope="session")
def real_root() -> Path:
    if not (REAL_DATA / "train" / "good").is_dir():
        pytest.skip("real MVTec transistor data not found (set DEFECTSYNTH_REAL_DATA)")
    return REAL_DATA
