"""The data stage of a run: sources -> curation -> FIM -> tokens (cached) -> mixture -> packed
train and eval sets.

It also fixes the step budget, since a budget in tokens or epochs depends on the data, and
writes down what it did: a report (JSON and markdown) and a manifest of every file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from adapt.data.curation.pipeline import Curator
from adapt.data.eval_sets import eval_specs
from adapt.data.mixture import MixtureError, budget_steps, plan_mixture
from adapt.data.packing import PAD, BlockDataset, pack
from adapt.data.sources import ResolvedSource, builtin_corpus, filter_spec, resolve_sources
from adapt.data.tokens import TokenizedDocs, tokenize_documents
from adapt.recipe.load import LoadedRecipe


@dataclass
class PreparedData:
    train: BlockDataset
    eval: dict[str, BlockDataset]
    steps: int
    report: dict = field(default_factory=dict)
    manifest: list[dict] = field(default_factory=list)


def fim_sources(loaded: LoadedRecipe) -> list[str]:
    return [s.name for s in loaded.recipe.data.sources if getattr(s, "fim", None) is not None]


def prepare_data(loaded: LoadedRecipe, tokenizer, world_size: int = 1, sentinels=None) -> PreparedData:
    """``sentinels`` (``adapt.data.fim.FimSentinels``) are needed when a source asks for FIM."""
    recipe = loaded.recipe
    seq_len = recipe.train.seq_len
    shares = {name: share for name, share in recipe.data.mixture.items() if share > 0}
    sources = resolve_sources(loaded)
    curator = Curator(recipe.data.curation, filter_spec(loaded))

    # Held-out first: eval documents must exist before training documents are checked against them.
    eval_sets = {}
    for spec in eval_specs(recipe):
        source = sources[spec.source] if spec.source in sources else builtin_corpus(loaded, spec.source)
        docs = tokenize_source(loaded, curator, source, "heldout", tokenizer, key=spec.key)
        eval_sets[spec.name] = docs.capped(spec.max_tokens_per_file, spec.max_tokens)
    fim_modes: Counter = Counter()
    train_docs = {name: tokenize_source(loaded, curator, sources[name], "train", tokenizer, sentinels=sentinels,
                                  fim_modes=fim_modes) for name in shares}

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
    eos_id = tokenizer.eos_token_id if recipe.data.packing == "documents" else None
    train = BlockDataset(train_blocks, pad_id, eos_id)
    evals = {name: BlockDataset(pack(tokens, seq_len), pad_id, eos_id) for name, tokens in eval_sets.items()}
    report = _report(sources, train_docs, plan, train_blocks, shares, evals, steps, fim_modes, recipe.data.packing)
    report["curation"] = curator.report()
    return PreparedData(train, evals, steps, report, curator.manifest)


def tokenize_source(loaded: LoadedRecipe, curator: Curator, source: ResolvedSource, split: str, tokenizer,
              key: str | None = None, sentinels=None, fim_modes: Counter | None = None) -> TokenizedDocs:
    refs = source.train if split == "train" else source.heldout
    docs = curator.documents(source, refs, split)
    fim = getattr(loaded.recipe.data.source(source.name), "fim", None) if split == "train" else None
    if fim is not None:
        docs = _with_fim(docs, fim, sentinels, fim_modes)
    tokenized = tokenize_documents(docs, tokenizer, desc=f"{source.name}/{split}", total=len(refs))
    if tokenized.num_tokens == 0:
        index = [s.name for s in loaded.recipe.data.sources].index(source.name)
        what = "has no held-out documents" if split == "heldout" else "has no documents left after curation"
        raise loaded.error(f"source {source.name!r} {what}", key or f"data.sources.{index}",
                           fix="add files, relax data.curation, or raise heldout.fraction / heldout.min_files")
    return tokenized


def _with_fim(docs, fim, sentinels, modes: Counter):
    """FIM on whole documents only: it runs before tokenizing and packing cut them into blocks."""
    from adapt.data.fim import FimSpec, fim_transform

    spec = FimSpec(rate=fim.rate, spm_rate=fim.spm_rate, seed=fim.seed)
    for name, text in docs:
        text, mode = fim_transform(text, name, spec, sentinels)
        modes[mode] += 1
        yield name, text


def _report(sources, train_docs, plan, train_blocks, shares, evals, steps, fim_modes, packing) -> dict:
    real = train_blocks != PAD
    fed = {name: 0 for name in plan.counts}
    for (name, _), row in zip(plan.order, real):
        fed[name] += int(row.sum())
    total_fed = sum(fed.values()) or 1
    fim_docs = sum(fim_modes.values())
    return {
        "steps": steps,
        "train_tokens": total_fed,
        "packing": {"mode": packing, "efficiency": float(real.mean()) if real.size else 0.0, "truncated_tokens": 0},
        "sources": {
            name: {
                "train_documents": len(src.train),
                "heldout_documents": len(src.heldout),
                "tokens": train_docs[name].num_tokens if name in train_docs else None,
                "revision": src.revision,
                "licence": src.licence,
            } for name, src in sources.items()
        },
        "mixture": {
            name: {"target": shares[name], "realised": fed[name] / total_fed, "tokens_fed": fed[name],
                   "repetition": round(plan.repetition[name], 4)}
            for name in plan.counts
        },
        "fim": {"documents": fim_docs, **{mode: n for mode, n in fim_modes.items()},
                "realised_rate": (fim_docs - fim_modes.get("none", 0)) / fim_docs if fim_docs else None},
        "eval": {name: {"tokens": ds.num_tokens, "blocks": len(ds)} for name, ds in evals.items()},
    }
