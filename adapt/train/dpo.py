"""Direct preference optimisation with trl's ``DPOTrainer`` (Rafailov et al. 2023).

trl tokenizes the pairs (strings, or conversations through the chat template) and computes the
loss; adapt reads and checks the rows, and picks the reference model. Under LoRA and QLoRA the
reference is the base without adapters, so it costs no memory; for full fine-tuning (or
``dpo.reference: copy``) it is a frozen copy of the base, passed as ``ref_model`` so that trl
never has to reload it by name.
"""

from __future__ import annotations

from adapt.recipe.load import LoadedRecipe
from adapt.train.runner import Setup

# What DPO logs that says whether it works: the reward margin (chosen minus rejected, in units
# of beta * log-ratio to the reference) and how often chosen beats rejected.
SUMMARY = ("train/rewards/margins", "train/rewards/accuracies", "train/loss")


def setup(loaded: LoadedRecipe) -> Setup:
    import datasets
    from trl import DPOConfig, DPOTrainer

    from adapt.data.chat import is_conversational, set_chat_template
    from adapt.data.rows import read_rows, rows_report
    from adapt.model import load_model
    from adapt.train.runner import load_base, with_adapter

    recipe = loaded.recipe
    model_path, tokenizer, model = load_base(loaded)
    rows = read_rows(loaded, 0)  # the recipe's one preferences source (checked when loaded)
    if is_conversational(rows.train[0]):
        set_chat_template(loaded, tokenizer)
    reference = None
    if recipe.adapter.method == "full" or recipe.dpo.reference == "copy":
        reference = load_model(model_path, recipe.model, recipe.adapter)
        reference.requires_grad_(False)
    model = with_adapter(loaded, model, [])
    evals = {name: datasets.Dataset.from_list(rows.heldout) for name in recipe.data.eval}
    for name, eval_set in evals.items():
        if len(eval_set) == 0:
            raise loaded.error(f"eval set {name!r} is empty: the source has no held-out pairs",
                               f"data.eval.{name}.source", fix="raise the source's heldout.fraction")
    steps = recipe.train.max_steps or -(-len(rows.train) // (recipe.train.batch_size * recipe.train.grad_accum))
    report = rows_report(rows, steps, {name: len(e) for name, e in evals.items()})

    def make_trainer(args: dict, callbacks: list):
        loss_type = [recipe.dpo.loss_type] if isinstance(recipe.dpo.loss_type, str) else recipe.dpo.loss_type
        config = DPOConfig(**args, beta=recipe.dpo.beta, loss_type=loss_type,
                           label_smoothing=recipe.dpo.label_smoothing, max_length=recipe.train.seq_len)
        return DPOTrainer(model=model, ref_model=reference, args=config,
                          train_dataset=datasets.Dataset.from_list(rows.train), eval_dataset=evals or None,
                          processing_class=tokenizer, callbacks=callbacks)

    return Setup(model, tokenizer, model_path, report, [], list(evals), recipe.train.tokens_per_step, make_trainer,
                 summary_metrics=SUMMARY)
