"""Named training settings. Options given on the command line override a preset's values.

`default` was chosen by measurement on the 2 shared CPU cores of the development machine (ImageNet
weights were not downloadable there, so all of this is training from scratch). Raw training
throughput at batch 32 (2 threads, idle machine): 128 img/s for mobilenet_v3_small at 128 px, 116 at
160 px, 49 for resnet18 at 96 px, 33 at 128 px, 53 for efficientnet_b0 at 96 px. On one balanced
transistor arm, mobilenet_v3_small at 128 px for 10 epochs reached a held-out balanced accuracy of
0.40, resnet18 at 96 px for 5 epochs 0.38 in several times the time. 2 arms x 5 splits x 1 seed on
real transistor then took 34 min wall (user CPU 24 min) on a machine loaded by other jobs; one
classifier took 100-120 s when the load was moderate. ImageNet weights (`auto` when they are cached
or downloadable) start far better. `fast` is for tests and smoke runs: seconds.
"""

from __future__ import annotations

from defectsynth.errors import DefectsynthError

PRESETS: dict[str, dict] = {
    "fast": {"model": "mobilenet_v3_small_050_map", "weights": "none", "size": 48, "epochs": 2, "batch_size": 16,
             "lr": 3e-3},
    "default": {"model": "mobilenet_v3_small_map", "weights": "auto", "size": 128, "epochs": 10, "batch_size": 32,
                "lr": 2e-3},
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise DefectsynthError(f"--preset {name!r} is unknown; use one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
