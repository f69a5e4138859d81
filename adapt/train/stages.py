"""``adapt train``: each stage kind's module builds its model, data and Trainer; the runner does the rest."""

from __future__ import annotations

import importlib

from adapt.recipe.load import LoadedRecipe
from adapt.train.runner import RunOutcome, run_stage

MODULES = {"cpt": "adapt.train.cpt", "sft": "adapt.train.sft", "dpo": "adapt.train.dpo", "grpo": "adapt.train.grpo"}


def train(loaded: LoadedRecipe, tags: dict[str, str] | None = None) -> RunOutcome:
    """Run (or resume) a recipe of any stage kind; under the diffusion objective, a cpt or sft
    stage is set up by ``adapt.diffusion.training`` instead."""
    if loaded.recipe.train.objective == "diffusion":
        from adapt.diffusion.training import diffusion_setup

        return run_stage(loaded, diffusion_setup, tags)
    module = importlib.import_module(MODULES[loaded.recipe.kind])
    return run_stage(loaded, module.setup, tags)


def prepare_data_report(loaded: LoadedRecipe) -> tuple[dict, list[dict]]:
    """``adapt data``: the stage's data report and manifest, prepared as ``adapt train`` prepares them."""
    return importlib.import_module(MODULES[loaded.recipe.kind]).data_report(loaded)
