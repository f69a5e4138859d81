"""Checks that span a recipe's sections by what its stage kind reads: which sources a kind can
train on, and which eval sets the evaluation section names. Run by ``adapt.recipe.load``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapt.recipe.load import LoadedRecipe


def check_evaluation_sets(loaded: LoadedRecipe) -> None:
    from adapt.data.eval_sets import eval_specs
    from adapt.recipe.load import close_match

    evaluation = loaded.recipe.evaluation
    sets = [spec.name for spec in eval_specs(loaded.recipe)]
    named = [(f"evaluation.general.{i}", name) for i, name in enumerate(evaluation.general or [])]
    named += [(f"evaluation.group_by.{name}", name) for name in evaluation.group_by]
    for key, name in named:
        if name not in sets:
            raise loaded.error(f"no eval set of documents is named {name!r}{close_match(name, sets)}", key,
                               fix=f"use one of: {', '.join(sets) or '(none: add data.eval)'}")


# Which source kinds each stage kind trains on; documents mix into SFT as rehearsal.
_STAGE_SOURCES = {"cpt": ("documents",), "sft": ("instructions", "documents"), "dpo": ("preferences",),
                  "grpo": ("code_tasks",)}
_NEEDED = {"sft": "instructions", "dpo": "preferences", "grpo": "code_tasks"}


def check_stage_sources(loaded: LoadedRecipe) -> None:
    from adapt.recipe.schema import DOCUMENT_KINDS

    recipe = loaded.recipe
    allowed = _STAGE_SOURCES[recipe.kind]
    kinds = ["documents" if s.kind in DOCUMENT_KINDS else s.kind for s in recipe.data.sources]
    for i, kind in enumerate(kinds):
        if kind not in allowed:
            raise loaded.error(f"a {recipe.data.sources[i].kind} source cannot be used by kind {recipe.kind}",
                               f"data.sources.{i}.kind",
                               fix=f"kind {recipe.kind} reads {' and '.join(allowed)} sources; "
                                   f"change the recipe's kind or remove this source")
    needed = _NEEDED.get(recipe.kind)
    if needed and needed not in kinds:
        raise loaded.error(f"kind {recipe.kind} needs a source of kind {needed}", "data.sources",
                           fix=f"add e.g. {{name: train, kind: {needed}, path: data.jsonl}}")
    if recipe.kind in ("dpo", "grpo") and len(kinds) > 1:
        raise loaded.error(f"kind {recipe.kind} trains on one {needed} source", "data.sources",
                           fix="merge the files into one source (path takes a glob)")
    if recipe.kind in ("dpo", "grpo") and recipe.train.max_tokens is not None:
        raise loaded.error(f"kind {recipe.kind} counts its budget in rows, not tokens", "train.max_tokens",
                           fix="set train.max_steps or train.epochs instead")
    if recipe.kind == "grpo" and recipe.data.eval:
        raise loaded.error("grpo runs have no eval sets", "data.eval",
                           fix="remove data.eval; train/rewards/execution/mean is the measure during training")


def check_objective(loaded: LoadedRecipe) -> None:
    """The diffusion objective trains CPT and SFT stages, on examples that do not share a row."""
    recipe = loaded.recipe
    if recipe.train.objective != "diffusion":
        return
    if recipe.kind not in ("cpt", "sft"):
        raise loaded.error(f"kind {recipe.kind} has no diffusion objective", "train.objective",
                           fix="use train.objective: diffusion in a cpt or sft stage, or remove it")
    if recipe.kind == "sft" and recipe.sft.packing:
        raise loaded.error("packed SFT rows would attend to each other under diffusion's full attention",
                           "sft.packing", fix="set sft.packing: false")
    fim = [i for i, s in enumerate(recipe.data.sources) if getattr(s, "fim", None) is not None]
    if fim:
        raise loaded.error("FIM sentinels are for the clm objective: diffusion infills without them",
                           f"data.sources.{fim[0]}.fim", fix="remove fim from the source, or train with objective clm")
