"""The model, data and Trainer of a ``cpt`` or ``sft`` stage under ``train.objective: diffusion``:
the stage's own data, a mask token, full attention, and ``DiffusionTrainer`` over noised batches.
SFT rows keep their labels (-100 on the prompt), so the prompt is an unmaskable prefix and only
the response is masked."""

from __future__ import annotations

import os

import torch

from adapt.diffusion.masking import EVAL_INDEX
from adapt.recipe.load import LoadedRecipe


class IndexedRows(torch.utils.data.Dataset):
    """An eval set whose rows carry their index, so the collator noises each row the same way at
    every evaluation."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {**self.rows[i], EVAL_INDEX: i}


def diffusion_setup(loaded: LoadedRecipe):
    from transformers import TrainingArguments

    from adapt.diffusion.attention import add_mask_token, make_bidirectional
    from adapt.diffusion.loss import DiffusionTrainer, EpochCallback
    from adapt.diffusion.masking import DiffusionCollator
    from adapt.train.runner import Setup, load_base, with_adapter, world_size

    recipe = loaded.recipe
    model_path, tokenizer, model = load_base(loaded)
    mask_id, new_token_ids = add_mask_token(tokenizer, model, recipe.diffusion.mask_token)
    if recipe.kind == "sft":
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        from adapt.data.sft import prepare_sft_data

        data = prepare_sft_data(loaded, tokenizer, world_size())
        base_collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    else:
        from adapt.data.packing import collate
        from adapt.data.prepare import prepare_data

        data = prepare_data(loaded, tokenizer, world_size())
        base_collate = collate
    make_bidirectional(model)
    model = with_adapter(loaded, model, new_token_ids)
    # Each rank draws its own noise, as it reads its own data. load_tokenizer guarantees a pad token.
    rank = int(os.environ.get("RANK", "0"))
    collator = DiffusionCollator(recipe.diffusion, mask_id, tokenizer.pad_token_id, base_collate,
                                 seed=recipe.train.seed + rank)
    evals = {name: IndexedRows(rows) for name, rows in data.eval.items()}

    # An epoch, for the strategies' schedule, is a pass over the most repeated source.
    passes = max([entry["repetition"] for entry in data.report["mixture"].values()] or [1.0])
    epochs = EpochCallback(collator, data.report["steps"] / max(passes, 1e-9))

    def make_trainer(args: dict, callbacks: list):
        # Keep every column: the collator reads them all and adds its own.
        return DiffusionTrainer(model=model, args=TrainingArguments(**{**args, "remove_unused_columns": False}),
                                train_dataset=data.train, eval_dataset=evals or None, data_collator=collator,
                                processing_class=tokenizer, callbacks=[*callbacks, epochs])

    return Setup(tokenizer, model_path, data.report, data.manifest, list(data.eval),
                 recipe.train.tokens_per_step, make_trainer)
