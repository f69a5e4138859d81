"""Code completion accuracy on held-out files (the H2LooP embedded-CPT evaluation): cut a file at
a line boundary, greedily generate the next N tokens, and compare with what the file has.

- token accuracy: generated tokens equal to the file's, position by position, over the N;
- line exact match: the first generated line equals the file's next line;
- edit similarity: 1 - Levenshtein(generated line, next line) / the longer one's length.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np

from adapt.evaluate.generation import generate_batched

_LINE_TOKENS = 256  # enough tokens of the file to hold its next line


def completion_accuracy(model, tokenizer, document_set, spec, seq_len: int, batch_size: int) -> dict:
    """``spec`` is the recipe's ``evaluation.completion``. Returns the set's metrics and per category."""
    n = spec.max_new_tokens
    cuts = line_cuts(tokenizer, document_set.docs, spec.min_prefix_tokens, spec.max_samples, spec.seed)
    if not cuts:
        return {"samples": 0}
    prompts = [document_set.docs[d].tokens[max(0, i - (seq_len - n)): i].tolist() for d, i in cuts]
    generated = generate_batched(model, tokenizer, prompts, n, batch_size, f"complete {document_set.spec.name}")
    overall = np.zeros(5)  # matched tokens, compared tokens, lines, exact lines, summed similarity
    totals: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(5))
    for (d, i), new in zip(cuts, generated):
        doc = document_set.docs[d]
        target = doc.tokens[i: i + n].tolist()
        matched = sum(a == b for a, b in zip(new, target))
        reference = next_line(tokenizer, doc.tokens, i)
        line = tokenizer.decode(new, skip_special_tokens=True).split("\n")[0]
        row = np.array([matched, len(target), 1, line == reference, edit_similarity(line, reference)])
        overall += row
        totals[doc.category] += row
    result = _metrics(overall)
    result["categories"] = {name: _metrics(row) for name, row in sorted(totals.items())}
    return result


def line_cuts(tokenizer, docs, min_prefix: int, max_samples: int, seed: int) -> list[tuple[int, int]]:
    """Up to ``max_samples`` (document, token index) cuts right after a newline and before a line
    that is not blank (a blank line is too easy to predict), spread over the documents as evenly
    as they allow, chosen with a fixed seed."""
    ends_line = newline_token_ids(tokenizer)
    rng = random.Random(seed)
    per_doc = []
    for d, doc in enumerate(docs):
        positions = [i for i in range(min_prefix, len(doc.tokens) - 1) if int(doc.tokens[i - 1]) in ends_line]
        rng.shuffle(positions)
        per_doc.append([(d, i) for i in positions])
    cuts = []
    while len(cuts) < max_samples and any(per_doc):  # round robin: one cut per document per turn
        for positions in per_doc:
            while positions and len(cuts) < max_samples:
                d, i = positions.pop()
                if next_line(tokenizer, docs[d].tokens, i).strip():
                    cuts.append((d, i))
                    break
    return sorted(cuts)


def next_line(tokenizer, tokens, start: int) -> str:
    return tokenizer.decode(tokens[start: start + _LINE_TOKENS], skip_special_tokens=True).split("\n")[0]


def newline_token_ids(tokenizer) -> set[int]:
    """Ids of the tokens whose text ends a line."""
    ids = range(len(tokenizer))
    return {i for i, text in zip(ids, tokenizer.batch_decode([[i] for i in ids])) if text.endswith("\n")}


def edit_similarity(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def _metrics(row: np.ndarray) -> dict:
    matched, compared, lines, exact, similarity = row
    return {"token_accuracy": matched / compared if compared else 0.0, "line_exact_match": exact / lines,
            "edit_similarity": similarity / lines, "samples": int(lines)}
