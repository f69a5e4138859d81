"""The data stage of SFT: instruction rows tokenized with their loss masks, plus rehearsal.

Rehearsal (Code Llama's instruct stage, Rozière et al. 2023 §2.5) mixes a token share of
pretraining-style documents into instruction tuning through the same ``data.mixture`` as CPT:
document sources are curated and tokenized as in CPT, cut into pieces of at most ``seq_len``
tokens, and carry the loss on every token. The result is one tokenized ``datasets.Dataset``
(``input_ids``, ``labels``), packed by trl's packer, that trl's ``SFTTrainer`` trains on as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from adapt.data.chat import is_conversational, set_chat_template, tokenize_example
from adapt.data.mixture import MixtureError, budget_tokens, draw_tokens, steps_over_rows
from adapt.data.rows import instruction_sources, read_rows
from adapt.errors import AdaptError
from adapt.recipe.load import LoadedRecipe

Example = tuple[list[int], list[int]]  # input_ids, loss mask


@dataclass
class SftData:
    train: object  # datasets.Dataset
    eval: dict[str, object]
    report: dict = field(default_factory=dict)
    manifest: list[dict] = field(default_factory=list)


def prepare_sft_data(loaded: LoadedRecipe, tokenizer, world_size: int = 1) -> SftData:
    recipe = loaded.recipe
    seq_len, assistant_only = recipe.train.seq_len, recipe.sft.assistant_only_loss
    shares = {name: share for name, share in recipe.data.mixture.items() if share > 0}
    rows = {recipe.data.sources[i].name: read_rows(loaded, i) for i in instruction_sources(loaded)}
    firsts = [r for source in rows.values() for r in source.train[:1] + source.heldout[:1]]
    if any(is_conversational(r) for r in firsts):
        # Conversations need the template's assistant marks; prompt/completion rows are masked by
        # their shared prefix, so any template will do for them.
        set_chat_template(loaded, tokenizer, assistant_masks=assistant_only and any("messages" in r for r in firsts))
    documents = _DocumentPieces(loaded, tokenizer, seq_len)

    train: dict[str, list[Example]] = {}
    for name in shares:
        train[name] = (_tokenize_rows(rows[name].train, tokenizer, assistant_only, f"{name}/train", rows[name].origin)
                       if name in rows else documents.pieces(name, "train"))
    evals = {}
    for set_name, spec in recipe.data.eval.items():
        if spec.source in rows:
            examples = _tokenize_rows(rows[spec.source].heldout, tokenizer, assistant_only, f"{set_name}/eval",
                                      rows[spec.source].origin)
            evals[set_name] = _capped(examples, spec.max_tokens)
        else:
            evals[set_name] = documents.pieces(spec.source, "heldout", spec)
        if not evals[set_name]:
            raise loaded.error(f"eval set {set_name!r} is empty: its source has no held-out rows",
                               f"data.eval.{set_name}.source", fix="raise that source's heldout.fraction")

    source_tokens = {name: sum(len(ids) for ids, _ in examples) for name, examples in train.items()}
    total_tokens = budget_tokens(recipe.train, source_tokens, shares, world_size)
    try:
        plan = draw_tokens({name: [len(ids) for ids, _ in examples] for name, examples in train.items()},
                           {name: round(shares[name] * total_tokens) for name in shares},
                           recipe.data.max_repetition, recipe.data.seed)
    except MixtureError as exc:
        raise loaded.error(f"not enough data: {exc}", f"data.mixture.{exc.source}",
                           fix="add data, lower its share or the budget, or raise data.max_repetition") from None
    mixed = [train[name][i] for name, i in plan.order]
    report = _report(train, rows, plan, mixed, evals, seq_len, documents, shares, recipe.sft.packing)
    packing = recipe.sft.packing
    dataset = _dataset(mixed, seq_len, packing)
    report["packing"]["efficiency"] = sum(map(len, dataset["input_ids"])) / (len(dataset) * seq_len)
    # The rows were drawn to fill the budget, so one pass over them is the run (trl may pack them
    # into fewer rows than the budget's tokens / seq_len).
    report["steps"] = steps_over_rows(recipe.train, len(dataset), passes=1.0, world_size=world_size)
    return SftData(dataset, {n: _dataset(e, seq_len, packing) for n, e in evals.items()}, report,
                   documents.curator.manifest)


def _tokenize_rows(rows: list[dict], tokenizer, assistant_only: bool, desc: str, origin: str) -> list[Example]:
    examples = []
    for row in tqdm(rows, desc=f"tokenize {desc}", unit="row", leave=False):
        ids, mask = tokenize_example(row, tokenizer, assistant_only)
        if not any(mask):
            raise AdaptError("a row has no tokens to learn from: the chat template marks none of its tokens as "
                             "the assistant's", file=origin, key="model.chat_template",
                             fix="check the template's {% generation %} markers and the rows' assistant messages")
        examples.append((ids, mask))
    return examples


def _capped(examples: list[Example], max_tokens: int) -> list[Example]:
    kept, total = [], 0
    for example in examples:
        if total >= max_tokens:
            break
        kept.append(example)
        total += len(example[0])
    return kept


class _DocumentPieces:
    """Document sources (rehearsal, and general eval sets) as pieces of at most ``seq_len`` tokens,
    curated and tokenized (with the token cache) exactly as CPT does."""

    def __init__(self, loaded: LoadedRecipe, tokenizer, seq_len: int):
        from adapt.data.curation.pipeline import Curator
        from adapt.data.sources import filter_spec, resolve_sources

        self.loaded, self.tokenizer, self.seq_len = loaded, tokenizer, seq_len
        self.sources = resolve_sources(loaded)
        self.curator = Curator(loaded.recipe.data.curation, filter_spec(loaded))
        self.tokens: dict[str, int] = {}

    def pieces(self, name: str, split: str, eval_spec=None) -> list[Example]:
        from adapt.data.prepare import tokenize_source

        docs = tokenize_source(self.loaded, self.curator, self.sources[name], split, self.tokenizer)
        if eval_spec is not None:
            flat = docs.capped(eval_spec.max_tokens_per_file, eval_spec.max_tokens)
            ends = np.flatnonzero(flat == self.tokenizer.eos_token_id) + 1
            bounds = np.concatenate([[0], ends, [flat.size]])
        else:
            flat, bounds = docs.tokens, docs.doc_starts
            self.tokens[name] = docs.num_tokens
        pieces = []
        for start, end in zip(bounds[:-1], bounds[1:]):
            for cut in range(int(start), int(end), self.seq_len):
                ids = flat[cut: min(cut + self.seq_len, int(end))].tolist()
                if ids:
                    pieces.append((ids, [1] * len(ids)))
        return pieces


def _dataset(examples: list[Example], seq_len: int, packing: bool):
    """``input_ids`` and ``labels`` (-100 where the mask is 0), cut to ``seq_len`` (the start is
    kept, as trl does), and packed by trl's best-fit decreasing packer, which keeps examples
    whole and records their lengths (``seq_lengths``) for the position ids."""
    import datasets
    from trl.data_utils import pack_dataset

    ids = [example[:seq_len] for example, _ in examples]
    labels = [[t if m else -100 for t, m in zip(example[:seq_len], mask)] for example, mask in examples]
    keep = [i for i, row in enumerate(labels) if any(t != -100 for t in row)]  # a cut may leave no target
    dataset = datasets.Dataset.from_dict({"input_ids": [ids[i] for i in keep], "labels": [labels[i] for i in keep]})
    return pack_dataset(dataset, seq_len, "bfd") if packing else dataset


def _report(train, rows, plan, mixed, evals, seq_len, documents, shares, packing) -> dict:
    fed = {name: 0 for name in train}
    for name, i in plan.order:
        fed[name] += len(train[name][i][0])
    total = sum(fed.values()) or 1
    masked = sum(sum(mask) for _, mask in mixed)
    sources = {name: {"train_documents": len(r.train), "heldout_documents": len(r.heldout), "format": r.format,
                      "tokens": sum(len(ids) for ids, _ in train.get(name, [])) or None, "revision": None,
                      "licence": None} for name, r in rows.items()}
    for name, source in documents.sources.items():
        sources[name] = {"train_documents": len(source.train), "heldout_documents": len(source.heldout),
                         "tokens": documents.tokens.get(name), "revision": source.revision, "licence": source.licence}
    return {
        "steps": None,  # set once the rows are packed
        "train_tokens": total,
        "loss_tokens": masked,
        "packing": {"mode": "trl bfd" if packing else "none", "efficiency": None,
                    "truncated_tokens": sum(max(0, len(ids) - seq_len) for ids, _ in mixed)},
        "sources": sources,
        "mixture": {name: {"target": shares[name], "realised": fed[name] / total, "tokens_fed": fed[name],
                           "repetition": round(plan.repetition[name], 4)} for name in train},
        "eval": {name: {"tokens": sum(len(ids) for ids, _ in e), "examples": len(e)} for name, e in evals.items()},
        "curation": documents.curator.report(),
    }
