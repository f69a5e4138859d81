"""Continual pretraining (CPT): packed document blocks from the token-level mixture, trained with
a plain transformers ``Trainer``. The run's lifecycle (resume, tracking, saving) is
``adapt.train.runner``'s; this module builds the model, the data and the Trainer.
"""

from __future__ import annotations

from adapt.recipe.load import LoadedRecipe
from adapt.train.runner import Setup


def setup(loaded: LoadedRecipe) -> Setup:
    from transformers import Trainer, TrainingArguments

    from adapt.data.packing import collate, configure_model
    from adapt.data.prepare import prepare_data
    from adapt.train.runner import load_base, with_adapter, world_size

    recipe = loaded.recipe
    model_path, tokenizer, model = load_base(loaded)
    sentinels, new_token_ids = fim_sentinels(loaded, tokenizer, model)
    data = prepare_data(loaded, tokenizer, world_size(), sentinels)
    configure_model(model, recipe.data.packing)
    model = with_adapter(loaded, model, new_token_ids)

    def make_trainer(args: dict, callbacks: list):
        return Trainer(model=model, args=TrainingArguments(**args), train_dataset=data.train,
                       eval_dataset=data.eval or None, data_collator=collate, processing_class=tokenizer,
                       callbacks=callbacks)

    return Setup(tokenizer, model_path, data.report, data.manifest, list(data.eval),
                 recipe.train.tokens_per_step, make_trainer)


def data_report(loaded: LoadedRecipe) -> tuple[dict, list[dict]]:
    from adapt.data.prepare import prepare_data
    from adapt.train.runner import base_tokenizer

    _, tokenizer = base_tokenizer(loaded)
    data = prepare_data(loaded, tokenizer, sentinels=fim_sentinels(loaded, tokenizer)[0])
    return data.report, data.manifest


def fim_sentinels(loaded: LoadedRecipe, tokenizer, model=None):
    """The tokenizer's FIM sentinels, added (with new embedding rows) if a source needs them."""
    from adapt.data.fim import add_sentinels, find_sentinels
    from adapt.data.prepare import fim_sources

    if not fim_sources(loaded):
        return None, []
    found = find_sentinels(tokenizer)
    return (found, []) if found else add_sentinels(tokenizer, model)
