"""Classifiers by name, the timm `register_model` way: torchvision backbones with a new head.

    model, note = create_classifier("resnet18", num_classes=5, in_channels=3, weights="auto")

Plain classifiers return N x C logits. Defect-map models (names ending in `_map`) return
`DefectMaps(logits, maps)`: the same image logits plus N x C logits per cell at stride 4, where the
channel of `good` means background; `model_outputs` turns either kind into (logits, maps or None).

`weights`: "auto" (ImageNet weights when they can be loaded, else from scratch), "imagenet"
(ImageNet weights or a one-line error), "none" (from scratch), or the path of a safetensors
checkpoint written by this package. `note` says in one line which weights were used and why.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.error import URLError

import torch
import torch.nn.functional as F
import torchvision.models as tvm
from safetensors.torch import load_file
from torch import nn

from defectsynth.errors import DefectsynthError
from defectsynth.train.decide import defect_probability

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_WEIGHTS: dict[str, tvm.WeightsEnum | None] = {}
DOWNLOAD_TIMEOUT_S = 20
BACKGROUND = 0  # a map's background channel: classes begin with `good` (data/split.py)


def register_model(name: str, weights: tvm.WeightsEnum | None = None):
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        _WEIGHTS[name] = weights
        return fn
    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _resnet(builder):
    def build(num_classes: int) -> nn.Module:
        model = builder()
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model
    return build


def _classifier_last(builder, **kwargs):
    # efficientnet and mobilenet keep their head in model.classifier, ending with a Linear layer.
    def build(num_classes: int) -> nn.Module:
        model = builder(**kwargs)
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
        return model
    return build


class DefectMaps(NamedTuple):
    logits: torch.Tensor  # N x C image-class logits
    maps: torch.Tensor  # N x C x H/4 x W/4 logits per cell; the `good` channel is background


def model_outputs(out: torch.Tensor | DefectMaps) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(image logits, map logits or None) of either kind of model."""
    return (out.logits, out.maps) if isinstance(out, DefectMaps) else (out, None)


class MapNet(nn.Module):
    """A mobilenet_v3 backbone with its own image head, plus an FPN-style decoder over its stride 4, 8,
    16 and 32 features that predicts a class per cell at stride 4 (4 px at 128 px: thin leads survive).

    The backbone keeps torchvision's attribute names (`features`, `avgpool`, `classifier`), so ImageNet
    weights and the grayscale input adaptation apply unchanged; the decoder (depthwise-separable, width
    `width`) costs a small fraction of the backbone.

    The image logits add a region head to the global one: the decoder's features averaged over the map's
    cells, each weighted by its defect probability. The weights are not trained through (the map's
    probabilities learn from the masks, not to suit the image head); the decoder's features learn from
    both losses. Pooled over the whole part, the few cells of a thin lead drown among the rest. A good
    part's many faint cells still add up (summed weight: median 21 of 1024 cells on the recipe's split-0
    held-out good images, against 32-115 for lead and case defects), so the head speaks on every image.
    Measured on real transistor (README, "Naming the defect where the map finds it"): balanced accuracy
    +0.019 [+0.001, +0.038] over 25 models, most of it cut leads named right."""

    TAPS = (1, 3, 8, 12)  # indices into mobilenet_v3_small.features ending at stride 4, 8, 16, 32

    def __init__(self, backbone: nn.Module, num_classes: int, width: int = 64):
        super().__init__()
        self.features, self.avgpool, self.classifier = backbone.features, backbone.avgpool, backbone.classifier
        self.classifier[-1] = nn.Linear(self.classifier[-1].in_features, num_classes)
        with torch.no_grad():
            channels = [f.shape[1] for f in self._taps(torch.zeros(1, 3, 64, 64))]
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True))
        self.map_head = nn.Conv2d(width, num_classes, 1)
        self.region_head: nn.Linear | None = nn.Linear(width, num_classes)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.TAPS:
                taps.append(x)
        return taps

    def forward(self, x: torch.Tensor) -> DefectMaps:
        taps = self._taps(x)
        logits = self.classifier(torch.flatten(self.avgpool(taps[-1]), 1))
        fused = self.lateral[-1](taps[-1])
        for tap, lateral in zip(taps[-2::-1], self.lateral[-2::-1], strict=True):
            fused = lateral(tap) + F.interpolate(fused, size=tap.shape[-2:], mode="nearest")
        features = self.smooth(fused)
        maps = self.map_head(features)
        if self.region_head is not None:
            # the +1 keeps the average defined where no cell looks defective at all (0 / 0)
            weights = defect_probability(maps, BACKGROUND).unsqueeze(1).detach()
            region = (features * weights).sum(dim=(2, 3)) / (weights.sum(dim=(2, 3)) + 1)
            logits = logits + self.region_head(region)
        return DefectMaps(logits, maps)


def load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a checkpoint written by this package. A map model saved before the region head (2026-12-02)
    has none, and predicts as it was trained: by its global image head alone (and `--weights` of such a
    checkpoint fine-tunes it without one)."""
    if isinstance(model, MapNet) and "region_head.weight" not in state:
        model.region_head = None
    model.load_state_dict(state)


def _map_net(builder, **kwargs):
    def build(num_classes: int) -> nn.Module:
        return MapNet(builder(**kwargs), num_classes)
    return build


def has_map(name: str) -> bool:
    return name.endswith("_map")


register_model("resnet18", tvm.ResNet18_Weights.IMAGENET1K_V1)(_resnet(tvm.resnet18))
register_model("resnet34", tvm.ResNet34_Weights.IMAGENET1K_V1)(_resnet(tvm.resnet34))
register_model("resnet50", tvm.ResNet50_Weights.IMAGENET1K_V2)(_resnet(tvm.resnet50))
register_model("efficientnet_b0", tvm.EfficientNet_B0_Weights.IMAGENET1K_V1)(_classifier_last(tvm.efficientnet_b0))
register_model("mobilenet_v3_small", tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1)(
    _classifier_last(tvm.mobilenet_v3_small))
# Half width, no ImageNet weights exist for it: the tiny model of the fast preset (tests, smoke runs).
register_model("mobilenet_v3_small_050")(_classifier_last(tvm.mobilenet_v3_small, width_mult=0.5))
register_model("mobilenet_v3_small_map", tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1)(
    _map_net(tvm.mobilenet_v3_small))
register_model("mobilenet_v3_small_050_map")(_map_net(tvm.mobilenet_v3_small, width_mult=0.5))


def _first_conv(model: nn.Module) -> tuple[nn.Module, str]:
    """The input convolution and its attribute path (resnet: conv1; efficientnet/mobilenet: features.0.0)."""
    if isinstance(getattr(model, "conv1", None), nn.Conv2d):
        return model, "conv1"
    return model.features[0], "0"


def _adapt_input(model: nn.Module, in_channels: int, extra: int = 0, pretrained: bool = False) -> None:
    """Swap the RGB input convolution for one taking `in_channels` image channels plus `extra` more (the
    reference difference channels). For grayscale the RGB filters are summed (as timm's
    adapt_input_conv does) so ImageNet weights stay meaningful. A pretrained model's extra channel
    starts at zero weight, so the model starts as it was; from scratch every channel starts random."""
    parent, attr = _first_conv(model)
    conv: nn.Conv2d = getattr(parent, attr)
    if conv.in_channels == in_channels + extra:
        return
    new = nn.Conv2d(in_channels + extra, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None)
    with torch.no_grad():
        if pretrained or not extra:
            new.weight.zero_()
            new.weight[:, :in_channels].copy_(conv.weight if in_channels == 3 else conv.weight.sum(1, keepdim=True))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(parent, attr, new)


_UNAVAILABLE: dict[str, str] = {}  # model name -> why its weights could not be had, so one run tries once


def _imagenet_state(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights from the torch hub cache, downloading them if needed; raises OSError when offline."""
    if name in _UNAVAILABLE:
        raise OSError(_UNAVAILABLE[name])
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return _WEIGHTS[name].get_state_dict(progress=False)
    except (URLError, OSError, RuntimeError) as e:
        _UNAVAILABLE[name] = str(getattr(e, "reason", e))
        raise OSError(_UNAVAILABLE[name]) from e
    finally:
        socket.setdefaulttimeout(old)


def create_classifier(name: str, num_classes: int, in_channels: int = 3,
                      weights: str = "auto", reference_channels: int = 0) -> tuple[nn.Module, str]:
    """`in_channels`: of the image (1 or 3); `reference_channels`: more input channels, how the image
    differs from good parts (train/reference.py)."""
    if name not in _REGISTRY:
        raise DefectsynthError(f"--model {name!r} is unknown; use one of: {', '.join(list_models())}")
    if in_channels not in (1, 3):
        raise DefectsynthError(f"images have {in_channels} channels; only grayscale (1) and RGB (3) are supported")
    model = _REGISTRY[name](num_classes)
    pretrained = False
    if weights == "none":
        note = f"{name} trained from scratch (--weights none)"
    elif weights in ("auto", "imagenet"):
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        if _WEIGHTS[name] is None:
            if weights == "imagenet":
                raise DefectsynthError(f"--model {name} has no ImageNet weights; use --weights none or another --model")
            note = f"{name} trained from scratch (no ImageNet weights exist for it)"
        else:
            try:
                state = _imagenet_state(name)
            except OSError as e:
                if weights == "imagenet":
                    raise DefectsynthError(
                        f"--weights imagenet: cannot load {name} ImageNet weights ({e}); not in {cache} and not "
                        f"downloadable; connect once to download them, or use --weights auto|none") from None
                note = (f"{name} trained from scratch: ImageNet weights not in {cache} and not downloadable ({e})")
            else:
                head = {k for k in state if k.startswith(("fc.", "classifier."))}
                own = model.state_dict()
                model.load_state_dict({k: v for k, v in state.items()
                                       if k not in head or own[k].shape == v.shape}, strict=False)
                note = f"{name} from ImageNet weights ({_WEIGHTS[name]}), new {num_classes}-class head"
                pretrained = True
    else:
        path = Path(weights)
        if not path.is_file():
            raise DefectsynthError(f"--weights {weights}: no such file; use auto, imagenet, none or a .safetensors path")
        _adapt_input(model, in_channels, reference_channels)
        try:
            load_state(model, load_file(str(path)))
        except Exception as e:  # safetensors and torch raise several types for a wrong or damaged file
            raise DefectsynthError(f"--weights {path}: not a {name} checkpoint with {num_classes} classes and "
                                   f"{in_channels} channel(s) ({str(e).splitlines()[0][:120]})") from None
        _short_run_batchnorm(model)
        return model, f"{name} from checkpoint {path}"
    _adapt_input(model, in_channels, reference_channels, pretrained)
    _short_run_batchnorm(model)
    return model, note


def _short_run_batchnorm(model: nn.Module) -> None:
    """torchvision's mobilenet_v3 uses BatchNorm momentum 0.01, tuned for long ImageNet runs; after the
    few hundred steps of a small training set its running statistics are still far off and the model
    predicts one class in eval mode. The PyTorch default 0.1 tracks them in time."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
