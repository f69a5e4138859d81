"""Instruction tuning (SFT) with trl's ``SFTTrainer``: rows tokenized with their loss masks (and
rehearsal documents mixed in by token share, see ``adapt.data.sft``), packed by trl's best-fit
decreasing packer into ``train.seq_len`` rows, collated with restarting position ids so that no
example attends to another.
"""

from __future__ import annotations

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from adapt.recipe.load import LoadedRecipe
from adapt.train.runner import Setup


def setup(loaded: LoadedRecipe) -> Setup:
    from trl import SFTConfig, SFTTrainer

    from adapt.data.chat import stop_token_ids
    from adapt.data.sft import prepare_sft_data
    from adapt.model import load_model
    from adapt.train.runner import base_tokenizer, with_adapter, world_size

    recipe = loaded.recipe
    model_path, tokenizer = base_tokenizer(loaded)
    data = prepare_sft_data(loaded, tokenizer, world_size())  # bad rows fail before the weights load
    model = load_model(model_path, recipe.model, recipe.adapter)
    model.generation_config.eos_token_id = stop_token_ids(tokenizer)
    model = with_adapter(loaded, model, [])
    collator = _collator(recipe, tokenizer.pad_token_id)

    def make_trainer(args: dict, callbacks: list):
        # The data stage already built labels (prompt tokens -100) and packed the rows with trl's
        # packer, so trl's own preparation is skipped and its loss switches stay off.
        config = SFTConfig(**args, max_length=recipe.train.seq_len, packing=False, assistant_only_loss=False,
                           completion_only_loss=False, dataset_kwargs={"skip_prepare_dataset": True})
        return SFTTrainer(model=model, args=config, train_dataset=data.train, eval_dataset=data.eval or None,
                          processing_class=tokenizer, data_collator=collator, callbacks=callbacks)

    return Setup(tokenizer, model_path, data.report, data.manifest, list(data.eval),
                 recipe.train.tokens_per_step, make_trainer, summary_metrics=("train/mean_token_accuracy",))


def data_report(loaded: LoadedRecipe) -> tuple[dict, list[dict]]:
    from adapt.data.sft import prepare_sft_data
    from adapt.train.runner import base_tokenizer

    data = prepare_sft_data(loaded, base_tokenizer(loaded)[1])
    return data.report, data.manifest


class PackedRowsCollator(DataCollatorForLanguageModeling):
    """trl's collator, keeping one padded row per packed row and dropping the attention mask.

    Without a mask, transformers builds a block-diagonal causal mask from the restarting position
    ids (SDPA and eager attention), as for CPT's document packing. trl's padding-free default
    flattens the whole batch into one sequence, which flash attention's varlen kernels run well
    but SDPA runs as one (batch x seq_len)^2 attention: 5x slower here. Padding gets positions of
    its own (0, 1, ...), so it is a sequence apart; the first token of each example is not a
    target, since it would be predicted from the example before it.
    """

    def torch_call(self, examples):
        out = super().torch_call(examples)
        real = out.pop("attention_mask").bool()
        positions = out["position_ids"]
        out["labels"][(positions == 0) | ~real] = -100
        out["position_ids"] = torch.where(real, positions, (~real).long().cumsum(-1) - 1)
        return out


def _collator(recipe, pad_token_id: int):
    if not recipe.sft.packing:
        return DataCollatorForLanguageModeling(pad_token_id=pad_token_id)
    if (recipe.model.attn_implementation or "").startswith("flash_attention"):
        return DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True)  # varlen kernels
    return PackedRowsCollator(pad_token_id=pad_token_id, return_position_ids=True)
