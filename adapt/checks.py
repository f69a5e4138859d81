"""Everything checked before a run writes anything: the recipe against the model, the data and
the Trainer, and the cost estimate ``adapt validate`` prints."""

from __future__ import annotations

from pathlib import Path

from adapt.data.mixture import budget_steps
from adapt.data.sources import ResolvedSource, resolve_sources
from adapt.errors import AdaptError
from adapt.estimate import BYTES_PER_TOKEN, estimate
from adapt.model import local_max_positions
from adapt.recipe.load import LoadedRecipe, find_paths
from adapt.recipe.stages import RowsSource


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
    if recipe.model.rope_theta or recipe.model.rope_scaling:
        _check_rope(loaded)
    if recipe.train.keep_best:
        _check_keep_best(loaded)
    from adapt.train.arguments import check_trainer_args

    try:
        check_trainer_args(recipe.train, "cpt" if recipe.train.objective == "diffusion" else recipe.kind)
    except AdaptError as exc:
        raise loaded.error(exc.what, exc.key, exc.fix) from None
    for i, source in enumerate(recipe.data.sources):
        if isinstance(source, RowsSource) and source.path and not find_paths(loaded.base_dir, source.path):
            raise loaded.error(f"{source.path!r} matches no file or directory (looked in {loaded.base_dir})",
                               f"data.sources.{i}.path", fix="give jsonl/json/parquet/arrow files, a glob, or a "
                                                             "save_to_disk directory, relative to the recipe")
    if recipe.kind == "grpo":
        _check_grpo(loaded)
    if recipe.evaluation.enabled or recipe.evaluation.pass_at_k.tasks:
        _check_pass_at_k(loaded)
    return resolve_sources(loaded)


def _check_keep_best(loaded: LoadedRecipe) -> None:
    """Every checkpoint has an evaluation at its step, of a domain and a general set."""
    from adapt.data.eval_sets import eval_specs

    train = loaded.recipe.train
    if train.save_steps % train.eval_steps:
        raise loaded.error(f"save_steps {train.save_steps} is not a multiple of eval_steps {train.eval_steps}",
                           "train.keep_best", fix="make train.save_steps a multiple of train.eval_steps")
    specs = eval_specs(loaded.recipe)
    general = {spec.name for spec in specs if spec.general}
    domain = ({spec.name for spec in specs} | set(loaded.recipe.data.eval)) - general  # SFT's rows sets too
    if not general or not domain:
        raise loaded.error("keep_best needs a domain and a general eval set", "train.keep_best",
                           fix="add both to data.eval (see evaluation.general)")


def _check_rope(loaded: LoadedRecipe) -> None:
    """The RoPE settings against the model's config, where it is local (a hub model's at load)."""
    from transformers import AutoConfig, LlamaConfig

    from adapt.model import apply_rope

    model = loaded.recipe.model
    path = Path(model.base_model).expanduser()
    if model.is_builtin:
        config = LlamaConfig()  # the built-in model is a Llama
    elif (path / "config.json").is_file():
        config = AutoConfig.from_pretrained(path, trust_remote_code=model.trust_remote_code)
    else:
        return
    try:
        apply_rope(config, model)
    except AdaptError as exc:
        raise loaded.error(exc.what, exc.key, exc.fix) from None


def _check_grpo(loaded: LoadedRecipe) -> None:
    """GRPO's tasks parse, its reward functions import, and its batches hold whole groups."""
    from adapt.rewards import import_function
    from adapt.train.grpo import load_recipe_tasks
    from adapt.train.runner import world_size

    recipe = loaded.recipe
    rows = recipe.train.batch_size * recipe.train.grad_accum * world_size()
    if rows % recipe.grpo.num_generations:
        raise loaded.error(f"batch_size x grad_accum x processes ({rows}) is not a multiple of grpo.num_generations "
                           f"({recipe.grpo.num_generations})", "train.batch_size",
                           fix="each batch must hold whole groups of completions of one prompt")
    for i, spec in enumerate(recipe.grpo.rewards):
        if spec.function:
            import_function(loaded, spec.function, f"grpo.rewards.{i}.function")
    load_recipe_tasks(loaded)
    if any(spec.name == "execution" for spec in recipe.grpo.rewards):
        _check_isolation(loaded, recipe.grpo.sandbox.allow_weak_isolation, "grpo.sandbox.allow_weak_isolation")


def _check_pass_at_k(loaded: LoadedRecipe) -> None:
    """The tasks file parses, and the sandbox can run the samples."""
    from adapt.evaluate.measure import recipe_tasks

    if recipe_tasks(loaded):
        spec = loaded.recipe.evaluation.pass_at_k
        _check_isolation(loaded, spec.allow_weak_isolation, "evaluation.pass_at_k.allow_weak_isolation")


def _check_isolation(loaded: LoadedRecipe, allowed: bool, key: str) -> None:
    from adapt.sandbox import strongly_isolated

    if not allowed and not strongly_isolated():
        raise loaded.error("this machine's kernel gives the sandbox no namespaces, so it would refuse to run "
                           "every completion", key,
                           fix="run where namespaces are available (root with CAP_SYS_ADMIN, or user "
                               "namespaces), or set it to true to run model code with rlimits only")


def cost_report(loaded: LoadedRecipe, sources: dict[str, ResolvedSource], world_size: int = 1) -> dict:
    """Approximate tokens per source (from file sizes), steps, time and peak memory."""
    from adapt.device import cpu_has_bf16

    recipe = loaded.recipe
    tokens = {name: int(_bytes(src, src.train) / BYTES_PER_TOKEN) for name, src in sources.items()}
    report = {name: {"train_files": len(src.train), "heldout_files": len(src.heldout), "approx_tokens": tokens[name]}
              for name, src in sources.items()}
    eval_tokens = {name: int(_bytes(src, src.heldout) / BYTES_PER_TOKEN) for name, src in sources.items()}
    for name, size in _row_source_bytes(loaded).items():  # rows are counted by the data stage
        tokens[name], eval_tokens[name] = int(size / BYTES_PER_TOKEN), 0
        report[name] = {"train_files": "rows", "heldout_files": "rows", "approx_tokens": tokens[name]}
    shares = {n: s for n, s in recipe.data.mixture.items() if s > 0}
    eval_total = sum(min(spec.max_tokens, eval_tokens[spec.source]) for spec in recipe.data.eval.values())
    device = "cpu-bf16" if recipe.train.precision in ("auto", "bf16") and cpu_has_bf16() else "cpu-fp32"
    if recipe.kind in ("cpt", "sft"):  # budgets in tokens; the time and memory model is theirs
        steps = budget_steps(recipe.train, tokens, shares, world_size)
        train_tokens = steps * recipe.train.tokens_per_step * world_size
        timing = estimate(recipe, steps, eval_total, device)
    else:  # DPO and GRPO count steps in rows, known once the data stage has read them (`adapt data`)
        steps, train_tokens = recipe.train.max_steps, None
        timing = {"seconds": None, "no_estimate": f"no time estimate for {recipe.kind} (estimates cover cpt and sft)"}
    return {
        "sources": report,
        "mixture": shares,
        "steps": steps,
        "train_tokens": train_tokens,
        "eval_tokens": eval_total,
        "estimate_device": device,
        **timing,
    }


def _row_source_bytes(loaded: LoadedRecipe) -> dict[str, int]:
    """Bytes of the local files of each row source (instructions, preferences, code tasks)."""
    from adapt.recipe.schema import DOCUMENT_KINDS

    sizes = {}
    for source in loaded.recipe.data.sources:
        if source.kind in DOCUMENT_KINDS:
            continue
        path = getattr(source, "path", None)  # none for a hub dataset: no local bytes
        sizes[source.name] = sum(f.stat().st_size for f in find_paths(loaded.base_dir, path) if f.is_file()) \
            if path else 0
    return sizes


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
