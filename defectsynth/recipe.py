"""Recipes: a whole experiment in one YAML file, validated before anything runs.

    name: transistor
    data: {path: data/transistor}          # or {path: data/demo, demo: {size: 256}} to make demo data
    work: runs/transistor
    split: {protocol: first, shots: 3, seed: 0}
    generate:
      - {class: all, n: 213}               # each class's default generator
      - {class: bent_lead, method: diffusion, n: 100}
    rebalance:
      balanced: {strategy: synthetic}      # <name>: the options of `defectsynth rebalance`
    train_eval: {arms: [original, balanced], splits: 5, preset: default}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from defectsynth.balance import RebalanceConfig, arms_problem
from defectsynth.errors import DefectsynthError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoData(Strict):
    size: int = Field(1024, ge=32)
    seed: int = 0


class DataSection(Strict):
    path: Optional[Path] = None  # None: $DEFECTSYNTH_DATA, else data/transistor
    demo: Optional[DemoData] = None  # make the procedural demo category there when it is missing


class SplitSection(Strict):
    protocol: Literal["first", "random"] = "first"
    shots: int = Field(3, ge=1)
    seed: int = 0


class GenerateStep(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    label: str = Field(alias="class")  # a defect class, or "all"
    n: int = Field(gt=0)
    method: Optional[str] = None  # None: the class's default generator
    seed: int = 0


class TrainEvalSection(Strict):
    arms: list[str] = ["original", "balanced"]
    splits: int = Field(1, ge=1)
    seeds: int = Field(1, ge=1)
    first_seed: int = Field(0, ge=0)
    preset: Literal["fast", "default"] = "default"
    model: Optional[str] = None
    weights: Optional[str] = None
    size: Optional[int] = Field(None, ge=16)
    epochs: Optional[int] = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    val: Optional[Literal["fold", "none", "kfold"]] = None
    augment: Literal["auto", "fixed", "rotating"] = "auto"
    reference: Optional[Literal["auto", "on", "off"]] = None

    @field_validator("arms")
    @classmethod
    def _arms(cls, value: list[str]):
        problem = arms_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class Recipe(Strict):
    name: str
    data: DataSection = DataSection()
    work: Optional[Path] = None  # None: runs/<category>
    split: SplitSection = SplitSection()
    generate: list[GenerateStep] = []
    rebalance: dict[str, RebalanceConfig] = {}
    train_eval: Optional[TrainEvalSection] = None

    @field_validator("rebalance")
    @classmethod
    def _names(cls, value: dict[str, RebalanceConfig]):
        if "original" in value:
            raise ValueError("'original' is written by every rebalance step; give the set another name")
        return value


def _where(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def _allowed_keys(loc: tuple) -> str:
    """The keys allowed where an unknown key `loc` was found."""
    sections = {(): Recipe, ("data",): DataSection, ("data", "demo"): DemoData, ("split",): SplitSection,
                ("generate", "*"): GenerateStep, ("rebalance", "*"): RebalanceConfig,
                ("train_eval",): TrainEvalSection}
    parent = tuple("*" if isinstance(p, int) or (loc[0] == "rebalance" and i == 1) else p
                   for i, p in enumerate(loc[:-1]))
    model = sections.get(parent)
    if model is None:
        return "see recipes/demo.yaml"
    return "allowed: " + ", ".join(f.alias or name for name, f in model.model_fields.items())


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe; any error is one line naming the key, the bad value and what is allowed."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DefectsynthError(f"recipe {path} not found; see recipes/ for examples") from None
    except IsADirectoryError:
        raise DefectsynthError(f"recipe {path} is a folder; pass a recipe file, e.g. {path / 'demo.yaml'}") from None
    except UnicodeDecodeError as e:
        raise DefectsynthError(f"{path}: not UTF-8 text (byte {e.start}); save the recipe as UTF-8") from None
    except OSError as e:
        raise DefectsynthError(f"recipe {path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise DefectsynthError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from None
    if not isinstance(doc, dict):
        raise DefectsynthError(f"{path}: a recipe is a YAML mapping with at least 'name'; see recipes/demo.yaml")
    try:
        return Recipe.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            raise DefectsynthError(f"{path}: {_where(err['loc'])}: unknown key; "
                                  f"{_allowed_keys(err['loc'])}") from None
        raise DefectsynthError(f"{path}: {_where(err['loc'])} = {err.get('input')!r}: {msg}") from None


DEMO_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml"
