"""The one place that turns --device into a torch device, for classifiers and generators alike."""

from __future__ import annotations

import torch

from defectsynth.errors import DefectsynthError

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(device: str = "auto") -> torch.device:
    """auto: a CUDA GPU when one is visible, else Apple's MPS, else the CPU."""
    if device not in DEVICES:
        raise DefectsynthError(f"--device {device!r} is unknown; use one of: {', '.join(DEVICES)}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DefectsynthError("--device cuda: no CUDA GPU is visible to torch; use --device auto or cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise DefectsynthError("--device mps: Apple's MPS is not available here; use --device auto or cpu")
    return torch.device(device)
