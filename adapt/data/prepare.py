"""The data stage of a run: sources -> tokens (cached) -> mixture -> packed train and eval sets.

It also fixes the step budget, since a budget in tokens or epochs depends on the data, and
writes down what it did in a report that is logged with the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from adapt.data.mixture import MixtureError, budget_steps, plan_mixture
from adapt.data.packing import PAD, BlockDataset, pack
from adapt.data.sources import ResolvedSource, resolve_sources
from adapt.data.tokens import TokenizedDocs, tokenize_documents
from adapt.recipe.load import LoadedRecipe


@dataclass
class PreparedData:
    train: BlockDataset
    eval: dict[str, BlockDataset]
    steps: int
    report: dict = field(default_factory=dict)


def prepare_data(loaded: LoadedRecipe, tokenizer, world_size: int = 1) -> PreparedData:
    recipe = loaded.recipe
    seq_len = recipe.train.seq_len
    shares = {name: share for name, share in recipe.data.mixture.items() if share > 0}
    sources = resolve_sources(loaded)
    train_docs = {name: _tokenize(loaded, sources[name], "train", tokenizer) for name in shares}
    eval_sets = {}
    for set_name, spec in recipe.data.eval.items():
        docs = _tokenize(loaded, sources[spec.source], "heldout", tokenizer, key=f"data.eval.{set_name}")
        eval_sets[set_name] = docs.capped(spec.max_tokens_per_file, spec.max_tokens)

    steps = budget_steps(recipe.train, {n: d.num_tokens for n, d in train_docs.items()}, shares, world_size)
    blocks = {name: pack(docs.tokens, seq_len) for name, docs in train_docs.items()}
    total_blocks = steps * recipe.train.batch_size * recipe.train.grad_accum * world_size
    try:
        plan = plan_mixture({n: len(b) for n, b in blocks.items()}, shares, total_blocks,
                            recipe.data.max_repetition, recipe.data.seed)
    except MixtureError as exc:
        raise loaded.error(
            f"not enough data: {exc}", f"data.mixture.{exc.source}",
            fix="add data, lower its share or the budget (train.max_tokens/max_steps), "
                "or raise data.max_repetition") from None
    train_blocks = np.stack([blocks[name][i] for name, i in plan.order])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train = BlockDataset(train_blocks, pad_id)
    evals = {name: BlockDataset(pack(tokens, seq_len), pad_id) for name, tokens in eval_sets.items()}
    report = _report(sources, train_docs, plan, train_blocks, shares, evals, steps)
    return PreparedData(train, evals, steps, report)


def _tokenize(loaded: LoadedRecipe, source: ResolvedSource, split: str, tokenizer,
              key: str | None = None) -> TokenizedDocs:
    refs = source.train if split == "train" else source.heldout
    docs = tokenize_documents(source.read(refs), tokenizer, desc=f"{source.name}/{split}", total=len(refs))
    if docs.num_tokens == 0:
        index = [s.name for s in loaded.recipe.data.sources].index(source.name)
        what = "has no held-out documents" if split == "heldout" else "has no readable documents"
        raise loaded.error(f"source {source.name!r} {what}", key or f"data.sources.{index}",
                           fix="add files, or raise heldout.fraction / heldout.min_files for eval sets")
    return docs


def _report(sources, train_docs, plan, train_blocks, shares, evals, steps) -> dict:
    real = (train_blocks != PAD)
    fed = {name: 0 for name in plan.counts}
    for (name, _), row in zip(plan.order, real):
        fed[name] += int(row.sum())
    total_fed = sum(fed.values()) or 1
    return {
        "steps": steps,
        "train_tokens": total_fed,
        "sources": {
            name: {
                "train_documents": len(src.train),
                "heldout_documents": len(src.heldout),
                "skipped": dict(src.skipped),
                "tokens": train_docs[name].num_tokens if name in train_docs else None,
            } for name, src in sources.items()
        },
        "mixture": {
            name: {"target": shares[name], "realised": fed[name] / total_fed, "tokens_fed": fed[name],
                   "repetition": round(plan.repetition[name], 4)}
            for name in plan.counts
        },
        "eval": {name: {"tokens": ds.num_tokens, "blocks": len(ds)} for name, ds in evals.items()},
    }
