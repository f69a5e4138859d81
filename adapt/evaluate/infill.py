"""Fill-in-the-middle exact match on held-out code, single-line and random-span, in PSM and SPM
order. Prompts are built by ``adapt.data.fim.fim_prompt``, the function the training samples
are built with, so the model is asked in the format it learnt."""

from __future__ import annotations

import random

from adapt.data.fim import FimSentinels, fim_prompt
from adapt.evaluate.generation import generate_batched


def infill_samples(text: str, span: str, rng: random.Random, max_span_chars: int) -> tuple[str, str, str] | None:
    """(prefix, middle, suffix) of one document: a whole non-blank line (with its newline), or a
    random span of 1..max_span_chars characters; None when the document has no such span."""
    if span == "line":
        lines = text.splitlines(keepends=True)
        candidates = [i for i, line in enumerate(lines) if line.strip()]
        if not candidates:
            return None
        i = rng.choice(candidates)
        return "".join(lines[:i]), lines[i], "".join(lines[i + 1:])
    if len(text) < 2:
        return None
    lo = rng.randrange(len(text) - 1)
    hi = min(len(text), lo + rng.randint(1, max_span_chars))
    return text[:lo], text[lo:hi], text[hi:]


def draw_samples(docs, span: str, spec) -> list[tuple[str, str, str]]:
    """Up to ``spec.max_samples`` (prefix, middle, suffix) samples of one span kind, drawn over the
    documents in turn with ``spec.seed``: every infill metric of a set asks about the same gaps."""
    rng = random.Random(spec.seed)
    samples = []
    for n in range(spec.max_samples * 4):  # documents that have no span are skipped
        picked = infill_samples(docs[n % len(docs)].text, span, rng, spec.max_span_chars)
        if picked:
            samples.append(picked)
        if len(samples) == spec.max_samples:
            break
    return samples


def fit_context(tokenizer, prefix: str, suffix: str, mode: str, sentinels: FimSentinels,
                max_tokens: int) -> list[int]:
    """The prompt's tokens: the whole context if it fits, else the end of the prefix and the
    start of the suffix, both cut in proportion until they fit."""
    head, tail = prefix, suffix
    while True:
        ids = tokenizer(fim_prompt(head, tail, mode, sentinels), add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens or not (head or tail):
            return ids
        share = min(0.9, max_tokens / len(ids))
        head, tail = head[len(head) - int(len(head) * share):], tail[: int(len(tail) * share)]


def infill_exact_match(model, tokenizer, document_set, spec, sentinels: FimSentinels, seq_len: int,
                       batch_size: int) -> dict:
    """``spec`` is the recipe's ``evaluation.infill``. Exact match (ignoring trailing whitespace)
    per span kind and order, e.g. ``{"line/psm": {"exact_match": 0.4, "samples": 32}}``."""
    results = {}
    for span in spec.spans:
        samples = draw_samples(document_set.docs, span, spec)
        for mode in spec.orders:
            prompts = [fit_context(tokenizer, p, s, mode, sentinels, seq_len - spec.max_new_tokens)
                       for p, _, s in samples]
            generated = generate_batched(model, tokenizer, prompts, spec.max_new_tokens, batch_size,
                                         f"infill {document_set.spec.name} {span}/{mode}")
            hits = sum(_middle(tokenizer, new, sentinels).rstrip() == middle.rstrip()
                       for new, (_, middle, _) in zip(generated, samples))
            results[f"{span}/{mode}"] = {"exact_match": hits / len(samples) if samples else 0.0,
                                         "samples": len(samples)}
    return results


def _middle(tokenizer, ids: list[int], sentinels: FimSentinels) -> str:
    """The generated middle: up to the end of the document (EOS, or Code Llama's EOT)."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for end in (sentinels.eot, tokenizer.eos_token):
        if end:
            text = text.split(end)[0]
    return text
