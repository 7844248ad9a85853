"""Named training settings. Options given on the command line override a preset's values.

`default` was chosen by measurement on 2 shared CPU cores (numbers in bench/train.py and the
issue note): 2 arms x 5 splits x 1 seed on the real transistor category must finish in roughly
20-30 minutes and still learn the four defect types. `fast` is for tests and smoke runs: seconds.
"""

from __future__ import annotations

from defectsynth.errors import DefectsynthError

PRESETS: dict[str, dict] = {
    "fast": {"model": "mobilenet_v3_small_050", "weights": "none", "size": 48, "epochs": 2, "batch_size": 16,
             "lr": 3e-3},
    "default": {"model": "mobilenet_v3_small", "weights": "auto", "size": 128, "epochs": 12, "batch_size": 32,
                "lr": 2e-3},
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise DefectsynthError(f"--preset {name!r} is unknown; use one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
