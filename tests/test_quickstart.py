"""The README's main job, run as a user runs it, with a tiny step budget. Also every shipped
recipe validates (recipes/accelerate holds accelerate's own configs, not recipes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapt.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if "accelerate" not in p.relative_to(ROOT).parts)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_recipe_validates(recipe, capsys):
    assert main(["validate", str(recipe)]) == 0, capsys.readouterr().err
    assert "what the run will cost" in capsys.readouterr().out


def test_quickstart_runs_end_to_end(tmp_path):
    # The built-in model's pretraining is cut to a few steps: CI checks the path, not the quality.
    cmd = [sys.executable, "-m", "adapt", "train", str(ROOT / "recipes" / "quickstart.yaml"),
           "train.max_steps=2", "model.builtin.pretrain_tokens=16384", f"train.output_dir={tmp_path / 'qs'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "domain" in done.stdout and "loss before" in done.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in done.stdout
    assert (tmp_path / "qs" / "final" / "adapter_config.json").is_file()
    assert not (tmp_path / "mlruns").exists(), "MLflow artifacts must not land in the current directory"


@pytest.mark.parametrize("mixture", sorted((ROOT / "mixtures").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_mixture_loads(mixture):
    from adapt.recipe.load import read_yaml, validate_data
    from adapt.recipe.schema import MixtureFile

    data, lines = read_yaml(mixture)
    spec = validate_data(data, MixtureFile, mixture, lines)
    assert abs(sum(spec.mixture.values()) - 1) < 1e-6
