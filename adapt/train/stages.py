"""``adapt train``: each stage kind's module builds its model, data and Trainer; the runner does the rest."""

from __future__ import annotations

import importlib

from adapt.recipe.load import LoadedRecipe
from adapt.train.runner import RunOutcome, run_stage

MODULES = {"cpt": "adapt.train.cpt", "sft": "adapt.train.sft", "dpo": "adapt.train.dpo", "grpo": "adapt.train.grpo"}


def train(loaded: LoadedRecipe, tags: dict[str, str] | None = None) -> RunOutcome:
    """Run (or resume) a recipe of any stage kind."""
    module = importlib.import_module(MODULES[loaded.recipe.kind])
    return run_stage(loaded, module.setup, tags)


def prepare_data_report(loaded: LoadedRecipe) -> tuple[dict, list[dict]]:
    """``adapt data``: the stage's data, prepared by the same function ``adapt train`` uses."""
    from adapt.train.runner import base_tokenizer

    recipe = loaded.recipe
    if recipe.kind == "dpo":
        from adapt.train.dpo import data

        return data(loaded)[2], []
    if recipe.kind == "grpo":
        from adapt.train.grpo import data

        return data(loaded)[1], []
    _, tokenizer = base_tokenizer(loaded)
    if recipe.kind == "sft":
        from adapt.data.sft import prepare_sft_data

        prepared = prepare_sft_data(loaded, tokenizer)
    else:
        from adapt.data.prepare import prepare_data
        from adapt.train.cpt import fim_sentinels

        prepared = prepare_data(loaded, tokenizer, sentinels=fim_sentinels(loaded, tokenizer)[0])
    return prepared.report, prepared.manifest
