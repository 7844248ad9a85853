"""RebalanceConfig: everything that decides a training set and how it is trained on.

The same object is written beside each training manifest (<name>.json) and read back by
train-eval, so an arm can be rebuilt exactly on another split.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from defectsynth.errors import DefectsynthError

STRATEGIES = ("none", "oversample", "undersample", "synthetic", "hybrid")
SAMPLERS = ("none", "weighted", "sqrt")
LOSSES = ("ce", "class-balanced", "focal", "logit-adjust", "balanced-softmax")
FILL_STRATEGIES = ("synthetic", "hybrid")  # the strategies that use synthetic images


def _pairs(text: str, form: str, example: str) -> list[tuple[str, str]]:
    """'a=1,b=2' as [('a', '1'), ('b', '2')], or a ValueError showing the expected form."""
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs or any(p.count("=") != 1 for p in pairs):
        raise ValueError(f"write it as {form} pairs, e.g. {example}")
    return [(k.strip(), v.strip()) for k, v in (p.split("=") for p in pairs)]


class RebalanceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["none", "oversample", "undersample", "synthetic", "hybrid"] = "synthetic"
    target: Union[Literal["auto", "sqrt"], int] = "auto"
    methods: Optional[list[str]] = None  # None: each class's default generator
    mix: Optional[dict[str, float]] = None  # share of each method among a class's synthetic images
    # per-class generators that override methods/mix for those classes, e.g. {misplaced: [pose]}: a
    # generator that makes one kind of defect must not fill the other classes
    class_methods: Optional[dict[str, list[str]]] = None
    real_ratio: Optional[float] = None  # minimum share of real rows per class, by repeating reals
    sampler: Literal["none", "weighted", "sqrt"] = "none"
    loss: Literal["ce", "class-balanced", "focal", "logit-adjust", "balanced-softmax"] = "ce"
    seed: int = Field(0, ge=0)  # imbalanced-learn's random_state takes 0 .. 2**32 - 1
    generate: bool = False  # make missing synthetic images instead of failing

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, value):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not (value in ("auto", "sqrt") or isinstance(value, int)):
            raise ValueError("use auto, sqrt or a number of images per class")
        if isinstance(value, int) and value < 1:
            raise ValueError("the number of images per class must be 1 or more")
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value):
        if isinstance(value, str):
            value = [m.strip() for m in value.split(",") if m.strip()]
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("give one or more distinct generator names, comma-separated (e.g. cutpaste,pose)")
        return value

    @field_validator("mix", mode="before")
    @classmethod
    def _mix(cls, value):
        if isinstance(value, str):
            pairs = _pairs(value, "method=share", "cutpaste=0.5,diffusion=0.5")
            try:
                value = {k: float(v) for k, v in pairs}
            except ValueError as e:
                raise ValueError("each share must be a number, e.g. cutpaste=0.5,diffusion=0.5") from e
            if len(value) != len(pairs):
                raise ValueError("name each method once")
        if value is not None and (not value or any(not share > 0 for share in value.values())):
            raise ValueError("every share must be above 0")
        return value

    @field_validator("class_methods", mode="before")
    @classmethod
    def _class_methods(cls, value):
        if isinstance(value, str):
            pairs, value = _pairs(value, "class=method", "misplaced=pose,damaged_case=diffusion"), {}
            for label, method in pairs:
                value.setdefault(label, []).append(method)
        if value is not None and (not value or any(not methods or len(set(methods)) != len(methods)
                                                   for methods in value.values())):
            raise ValueError("give each class one or more distinct generators, e.g. misplaced=pose")
        return value

    @field_validator("real_ratio")
    @classmethod
    def _real_ratio(cls, value):
        if value is not None and not 0 < value <= 1:
            raise ValueError("use a share above 0 and at most 1, e.g. 0.25")
        return value

    @model_validator(mode="after")
    def _fits_strategy(self):
        for option, value in (("--methods", self.methods), ("--mix", self.mix), ("--class-methods", self.class_methods),
                              ("--real-ratio", self.real_ratio)):
            if value is not None and self.strategy not in FILL_STRATEGIES:
                raise ValueError(f"{option} applies only to --strategy synthetic or hybrid, "
                                 f"not {self.strategy}; drop it or change --strategy")
        if self.mix is not None and self.methods is not None and set(self.mix) != set(self.methods):
            raise ValueError(f"--mix names {', '.join(self.mix)} but --methods names {', '.join(self.methods)}; "
                             "name the same methods (or give only --mix)")
        return self

    def method_shares(self, label: str | None = None) -> dict[str, float] | None:
        """Each method's share of `label`'s synthetic images, summing to 1; None: the class's default."""
        if label is not None and self.class_methods and label in self.class_methods:
            return {m: 1 / len(self.class_methods[label]) for m in self.class_methods[label]}
        if self.mix is not None:
            total = sum(self.mix.values())
            return {m: share / total for m, share in self.mix.items()}
        if self.methods is not None:
            return {m: 1 / len(self.methods) for m in self.methods}
        return None


def make_config(**options) -> RebalanceConfig:
    """A RebalanceConfig from command-line values; a bad value raises one line naming its option."""
    try:
        return RebalanceConfig(**options)
    except ValidationError as e:
        raise DefectsynthError(describe(e.errors()[0])) from None


def describe(error: dict, where: str = "") -> str:
    msg = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a rule across options: the message names them
        return f"{where}{msg}"
    option = "--" + str(error["loc"][0]).replace("_", "-")
    return f"{where}{option} {error['input']!r}: {msg[0].lower()}{msg[1:]}"
