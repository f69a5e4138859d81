"""Direct preference optimisation with trl's ``DPOTrainer`` (Rafailov et al. 2023).

trl tokenizes the pairs (strings, or conversations through the chat template) and computes the
loss; adapt reads and checks the rows, and picks the reference model. Under LoRA and QLoRA trl
gets the base model and a ``peft_config`` and wraps it itself, so the reference is the base with
the adapter disabled and costs no memory (given a model already wrapped, trl would copy the
adapter into a second, "ref" adapter, saved with every checkpoint). For full fine-tuning, or
``dpo.reference: copy``, the reference is a frozen copy of the base, passed as ``ref_model`` so
that trl never has to reload it by name.
"""

from __future__ import annotations

from adapt.recipe.load import LoadedRecipe
from adapt.train.runner import Setup

# What DPO logs that says whether it works: the reward margin (chosen minus rejected, in units
# of beta * log-ratio to the reference) and how often chosen beats rejected.
SUMMARY = ("train/rewards/margins", "train/rewards/accuracies", "train/loss")


def data(loaded: LoadedRecipe):
    """The recipe's one preferences source: (train rows, eval sets, data report)."""
    from adapt.data.mixture import steps_over_rows
    from adapt.data.rows import read_rows, rows_report
    from adapt.train.runner import world_size

    recipe = loaded.recipe
    rows = read_rows(loaded, 0)
    evals = {name: rows.heldout for name in recipe.data.eval}
    for name, eval_rows in evals.items():
        if not eval_rows:
            raise loaded.error(f"eval set {name!r} is empty: the source has no held-out pairs",
                               f"data.eval.{name}.source", fix="raise the source's heldout.fraction")
    steps = steps_over_rows(recipe.train, len(rows.train), world_size=world_size())
    return rows, evals, rows_report(rows, steps, {name: len(e) for name, e in evals.items()})


def data_report(loaded: LoadedRecipe) -> tuple[dict, list[dict]]:
    return data(loaded)[2], []


def setup(loaded: LoadedRecipe) -> Setup:
    import datasets
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    from adapt.adapters import lora_config, prepare_base
    from adapt.data.chat import is_conversational, set_chat_template
    from adapt.model import load_model
    from adapt.train.runner import load_base

    recipe = loaded.recipe
    rows, evals, report = data(loaded)
    model_path, tokenizer, model = load_base(loaded)
    if is_conversational(rows.train[0]):
        set_chat_template(loaded, tokenizer)
    reference = None
    if recipe.adapter.method == "full" or recipe.dpo.reference == "copy":
        reference = load_model(model_path, recipe.model, recipe.adapter).requires_grad_(False)
    peft_config = None
    if recipe.adapter.method != "full":
        model = prepare_base(model, recipe.adapter, recipe.train.gradient_checkpointing)
        peft_config = lora_config(recipe.adapter)

    def make_trainer(args: dict, callbacks: list):
        loss_type = [recipe.dpo.loss_type] if isinstance(recipe.dpo.loss_type, str) else recipe.dpo.loss_type
        config = DPOConfig(**args, beta=recipe.dpo.beta, loss_type=loss_type,
                           label_smoothing=recipe.dpo.label_smoothing, max_length=recipe.train.seq_len,
                           trust_remote_code=recipe.model.trust_remote_code)
        set_seed(recipe.train.seed)  # trl creates the adapter: its initial weights come from the global RNG
        return DPOTrainer(model=model, ref_model=reference, args=config, peft_config=peft_config,
                          train_dataset=datasets.Dataset.from_list(rows.train),
                          eval_dataset={n: datasets.Dataset.from_list(e) for n, e in evals.items()} or None,
                          processing_class=tokenizer, callbacks=callbacks)

    return Setup(tokenizer, model_path, report, [], list(evals), 0, make_trainer,
                 summary_metrics=SUMMARY)
