"""The documents of each eval set, as the data stage holds them out: the held-out files of a
source, curated the same way, tokenized (cached), each file's head capped, and each file put in a
category (its folder, its language, or a label from its jsonl record)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adapt.data.eval_sets import EvalSpec, eval_specs
from adapt.recipe.load import LoadedRecipe


@dataclass
class EvalDoc:
    name: str  # "<source>:<path>[:<line>]"
    category: str
    text: str
    tokens: np.ndarray  # the document's head, ending with EOS


@dataclass
class DocumentSet:
    spec: EvalSpec
    docs: list[EvalDoc]


def load_document_sets(loaded: LoadedRecipe, tokenizer) -> list[DocumentSet]:
    from adapt.data.curation.pipeline import Curator
    from adapt.data.sources import builtin_corpus, filter_spec, resolve_sources
    from adapt.data.tokens import tokenize_documents

    recipe = loaded.recipe
    sources = resolve_sources(loaded)
    curator = Curator(recipe.data.curation, filter_spec(loaded))
    sets = []
    for spec in eval_specs(recipe):
        source = sources[spec.source] if spec.source in sources else builtin_corpus(loaded, spec.source)
        pairs = list(curator.documents(source, source.heldout, "heldout"))
        tokenized = tokenize_documents(pairs, tokenizer, desc=f"{source.name}/heldout", total=len(source.heldout))
        budget = min(spec.max_tokens, recipe.evaluation.max_eval_tokens or spec.max_tokens)
        categorize = _categorizer(recipe.evaluation.group_by.get(spec.name), source)
        docs = []
        for (name, text), start, end in zip(pairs, tokenized.doc_starts[:-1], tokenized.doc_starts[1:]):
            if budget <= 0:
                break
            tokens = tokenized.tokens[start:end]
            if tokens.size > spec.max_tokens_per_file:  # the head, still ending with EOS
                tokens = np.append(tokens[: spec.max_tokens_per_file - 1], tokens[-1])
            tokens = tokens[:budget]
            budget -= tokens.size
            docs.append(EvalDoc(name, categorize(name[len(source.name) + 1:]), text, tokens.astype(np.int64)))
        if not docs:
            raise loaded.error(f"eval set {spec.name!r} has no held-out documents", spec.key,
                               fix="add files, relax data.curation, or raise the source's heldout.fraction")
        sets.append(DocumentSet(spec, docs))
    return sets


def _categorizer(group_by: str | None, source):
    """ref string ("path" or "path:line") -> category."""
    if group_by is None:
        return lambda ref: "all"
    if group_by == "folder":  # the top folder under the source's root: a vendor, a service, a team
        return lambda ref: Path(ref).parent.name if source.kind == "builtin_corpus" else (
            Path(ref).parts[0] if len(Path(ref).parts) > 1 else ".")
    if group_by == "language":
        from adapt.data.curation.filters import language_of

        return lambda ref: language_of(Path(ref)) or "unknown"
    field = group_by[len("label:"):]
    labels: dict[str, str] = {}

    def label(ref: str) -> str:
        path, _, line = ref.rpartition(":")
        if source.table is not None:
            value = source.table[int(line) - 1].get(field)
        else:
            if path not in labels:
                labels.update(_jsonl_labels(Path(path), field))
            value = labels.get(ref)
        return "unlabelled" if value is None else str(value)

    return label


def _jsonl_labels(path: Path, field: str) -> dict[str, str]:
    from adapt.data.sources import json_lines

    return {f"{path}:{line}": record.get(field) for line, record in json_lines(path) if isinstance(record, dict)}
