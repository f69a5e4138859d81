"""The train section -> transformers ``TrainingArguments``.

Named fields cover what recipes usually set; ``train.trainer_args`` passes anything else through,
checked by name so that a typo is an error and a key adapt manages cannot be set twice.
"""

from __future__ import annotations

import dataclasses
import difflib

from adapt.device import cuda_available, resolve_precision
from adapt.errors import AdaptError
from adapt.recipe.schema import TrainSection

# TrainingArguments that adapt derives from the recipe; setting them in trainer_args is an error.
_MANAGED = {
    "output_dir": "train.output_dir", "learning_rate": "train.lr", "max_steps": "train.max_steps",
    "num_train_epochs": "train.epochs", "per_device_train_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.grad_accum", "lr_scheduler_type": "train.schedule",
    "optim": "train.optimizer", "weight_decay": "train.weight_decay", "max_grad_norm": "train.max_grad_norm",
    "bf16": "train.precision", "fp16": "train.precision", "seed": "train.seed",
    "logging_steps": "train.logging_steps", "eval_steps": "train.eval_steps", "save_steps": "train.save_steps",
    "save_total_limit": "train.save_total_limit", "report_to": "tracking",
    "gradient_checkpointing": "train.gradient_checkpointing", "warmup_steps": "train.warmup_ratio",
    "trust_remote_code": "model.trust_remote_code",
}


# adapt tokenizes, masks and packs SFT data itself, so trl's data preparation fields would do nothing.
_SFT_DATA_FIELDS = ("max_length", "packing", "packing_strategy", "padding_free", "eval_packing", "dataset_kwargs",
                    "dataset_text_field", "eos_token", "chat_template_path", "assistant_only_loss",
                    "completion_only_loss")
# Fields of trl's configs that a stage sets from its own recipe section.
_MANAGED_BY_KIND = {
    "sft": dict.fromkeys(_SFT_DATA_FIELDS, "the sft section, train.seq_len or model.chat_template"),
    "dpo": {"max_length": "train.seq_len", "beta": "dpo.beta", "loss_type": "dpo.loss_type",
            "label_smoothing": "dpo.label_smoothing"},
    "grpo": {"num_generations": "grpo.num_generations", "max_completion_length": "grpo.max_new_tokens",
             "temperature": "grpo.temperature", "top_p": "grpo.top_p", "beta": "grpo.beta",
             "use_vllm": "grpo.use_vllm", "reward_weights": "grpo.rewards",
             "generation_batch_size": "train.batch_size", "steps_per_generation": "train.grad_accum"},
}


def check_trainer_args(train: TrainSection, kind: str = "cpt") -> None:
    """Refuse unknown or adapt-managed keys in ``train.trainer_args``: fields of the stage's
    config (``TrainingArguments``, or trl's ``SFTConfig``, ``DPOConfig``, ``GRPOConfig``)."""
    if not train.trainer_args:
        return  # importing transformers costs seconds; `adapt validate` skips it when it can
    config = config_class(kind)
    known = {f.name for f in dataclasses.fields(config)}
    managed = {**_MANAGED, **_MANAGED_BY_KIND.get(kind, {})}
    for key in train.trainer_args:
        if key in managed:
            raise AdaptError(f"{key} is set by adapt", key=f"train.trainer_args.{key}",
                             fix=f"use {managed[key]} instead")
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AdaptError(f"not a field of {config.__name__}{hint}", key=f"train.trainer_args.{key}",
                             fix=f"see the {config.__name__} documentation for the valid names")


def config_class(kind: str):
    """The Trainer config class of a stage kind."""
    if kind == "cpt":
        from transformers import TrainingArguments

        return TrainingArguments
    import trl

    return {"sft": trl.SFTConfig, "dpo": trl.DPOConfig, "grpo": trl.GRPOConfig}[kind]


def training_kwargs(train: TrainSection, checkpoint_dir: str, steps: int, has_eval: bool, resuming: bool) -> dict:
    """``TrainingArguments`` keyword arguments; trl's configs take them too."""
    precision = resolve_precision(train.precision)
    scheduler, scheduler_kwargs = _scheduler(train, steps)
    kwargs = dict(
        output_dir=checkpoint_dir,
        max_steps=steps,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        lr_scheduler_type=scheduler,
        lr_scheduler_kwargs=scheduler_kwargs,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a share of the steps
        optim=train.optimizer,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda_available(),
        seed=train.seed,
        logging_steps=train.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=train.eval_steps,
        eval_on_start=has_eval and not resuming,  # the base model's loss, logged at step 0
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=None,  # adapt rotates, after a checkpoint is marked complete
        gradient_checkpointing=train.gradient_checkpointing,
        report_to="none",  # adapt's own tracker callback logs instead of the synchronous MLflowCallback
        disable_tqdm=False,
        dataloader_num_workers=0,
    )
    kwargs.update(train.trainer_args)
    return kwargs


def _scheduler(train: TrainSection, steps: int) -> tuple[str, dict]:
    if train.schedule != "warmup_stable_decay":
        return train.schedule, {}
    # WSD (Hu et al. 2024, MiniCPM): warmup, a long constant phase, then a short decay.
    return "warmup_stable_decay", {"num_decay_steps": max(1, round(train.decay_ratio * steps)),
                                   "min_lr_ratio": train.min_lr_ratio}
