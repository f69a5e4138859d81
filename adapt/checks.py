"""Everything checked before a run writes anything: the recipe against the model, the data and
the Trainer, and the cost estimate ``adapt validate`` prints."""

from __future__ import annotations

from pathlib import Path

from adapt.data.mixture import budget_steps
from adapt.data.sources import ResolvedSource, resolve_sources
from adapt.errors import AdaptError
from adapt.estimate import BYTES_PER_TOKEN, estimate
from adapt.model import local_max_positions
from adapt.recipe.load import LoadedRecipe


def check_recipe(loaded: LoadedRecipe) -> dict[str, ResolvedSource]:
    """Raise an ``AdaptError`` naming the recipe key at fault; return the resolved sources."""
    recipe = loaded.recipe
    base = recipe.model.base_model
    if base.startswith(("/", "./", "../", "~")) and not Path(base).expanduser().is_dir():
        raise loaded.error(f"model directory {base} does not exist", "model.base_model",
                           fix="give a directory written by save_pretrained, a hub id, or `builtin`")
    max_positions = local_max_positions(recipe.model)
    if max_positions and recipe.train.seq_len > max_positions:
        raise loaded.error(f"seq_len {recipe.train.seq_len} is longer than the model allows ({max_positions})",
                           "train.seq_len", fix=f"use at most {max_positions}")
    from adapt.train.arguments import check_trainer_args

    try:
        check_trainer_args(recipe.train)
    except AdaptError as exc:
        raise loaded.error(exc.what, exc.key, exc.fix) from None
    return resolve_sources(loaded)


def cost_report(loaded: LoadedRecipe, sources: dict[str, ResolvedSource], world_size: int = 1) -> dict:
    """Approximate tokens per source (from file sizes), steps, time and peak memory."""
    from adapt.device import cpu_has_bf16

    recipe = loaded.recipe
    tokens = {name: int(_bytes(src, src.train) / BYTES_PER_TOKEN) for name, src in sources.items()}
    shares = {n: s for n, s in recipe.data.mixture.items() if s > 0}
    steps = budget_steps(recipe.train, tokens, shares, world_size)
    eval_tokens = sum(min(spec.max_tokens, int(_bytes(sources[spec.source], sources[spec.source].heldout) / BYTES_PER_TOKEN))
                      for spec in recipe.data.eval.values())
    device = "cpu-bf16" if recipe.train.precision in ("auto", "bf16") and cpu_has_bf16() else "cpu-fp32"
    return {
        "sources": {name: {"train_files": len(src.train), "heldout_files": len(src.heldout),
                           "approx_tokens": tokens[name]} for name, src in sources.items()},
        "mixture": shares,
        "steps": steps,
        "train_tokens": steps * recipe.train.tokens_per_step * world_size,
        "eval_tokens": eval_tokens,
        "estimate_device": device,
        **estimate(recipe, steps, eval_tokens, device),
    }


def _bytes(source: ResolvedSource, refs) -> int:
    if source.sizes:
        return sum(source.sizes.get(ref.path, 0) for ref in refs)
    total = 0
    for ref in refs:
        try:
            total += (source.root / ref.path).stat().st_size if not ref.line else 0
        except OSError:
            pass
    return total
