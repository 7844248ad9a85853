"""Recipes: validation messages, and `defectsynth run` end to end with skipping of current steps."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from defectsynth.cli import app
from defectsynth.errors import DefectsynthError
from defectsynth.recipe import DEMO_RECIPE, load_recipe

runner = CliRunner()
RECIPES = sorted(DEMO_RECIPE.parent.glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_validate(path):
    assert load_recipe(path).name == path.stem


@pytest.mark.parametrize("doc, expected", [
    ({"name": "x", "trian_eval": {}}, "trian_eval: unknown key; allowed: name, data, work, split"),
    ({"name": "x", "split": {"protocol": "last"}}, "split.protocol = 'last': Input should be 'first' or 'random'"),
    ({"name": "x", "generate": [{"class": "cut_lead", "n": 0}]}, "generate.0.n = 0: Input should be greater than 0"),
    ({"name": "x", "rebalance": {"b": {"strategy": "smote"}}}, "rebalance.b.strategy = 'smote'"),
    ({"name": "x", "rebalance": {"b": {"sampler": "weighted", "colour": 1}}},
     "rebalance.b.colour: unknown key; allowed: strategy"),
    ({"name": "x", "train_eval": {"preset": "fastest"}}, "train_eval.preset = 'fastest'"),
    ({"data": {}}, "name = "),
])
def test_recipe_errors_name_key_value_and_allowed(tmp_path, doc, expected):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(DefectsynthError) as err:
        load_recipe(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_run_recipe_end_to_end_then_skips(demo_root, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tiny", "data": {"path": str(demo_root)}, "work": str(tmp_path / "work"),
        "split": {"shots": 2},
        "generate": [{"class": "all", "n": 12}],
        "rebalance": {"balanced": {"strategy": "synthetic", "target": 12}},
        "train_eval": {"arms": ["original", "balanced"], "preset": "fast"},
    }))
    first = runner.invoke(app, ["run", str(recipe)])
    assert first.exit_code == 0, first.output
    assert list((tmp_path / "work" / "reports").glob("*/report.md")) and "Report:" in first.output

    again = runner.invoke(app, ["run", str(recipe)])
    assert again.exit_code == 0, again.output
    assert again.output.count("current, skipped") == 7  # split, 4 x generate, rebalance, train-eval

    # another split: what was made from the old one goes, and everything runs again
    doc = yaml.safe_load(recipe.read_text())
    doc["split"] = {"shots": 3}
    doc["train_eval"] = None
    recipe.write_text(yaml.safe_dump(doc))
    third = runner.invoke(app, ["run", str(recipe)])
    assert third.exit_code == 0, third.output
    assert "removing what was made from the old one" in third.output and "current, skipped" not in third.output


def test_run_missing_recipe_is_one_line(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "not found" in result.output and "Traceback" not in result.output
