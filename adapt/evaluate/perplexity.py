"""Loss and perplexity of a model on documents, token-weighted, per set and per category.

Each document is read in windows of ``seq_len`` that overlap by one token, so every token after
the first is predicted exactly once, with up to ``seq_len - 1`` tokens of its own document as
context. Windows are sorted by length and batched, so padding is small and nothing is computed
twice.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm


def document_nll(model, docs: list[np.ndarray], seq_len: int, batch_size: int,
                 desc: str = "loss") -> tuple[np.ndarray, np.ndarray]:
    """(summed negative log-likelihood in nats, predicted tokens) per document."""
    import torch
    import torch.nn.functional as F

    stride = max(seq_len - 1, 1)
    windows = [(i, tokens[start: start + seq_len]) for i, tokens in enumerate(docs)
               for start in range(0, max(len(tokens) - 1, 0), stride)]
    windows.sort(key=lambda w: -len(w[1]))
    nll, count = np.zeros(len(docs)), np.zeros(len(docs), dtype=np.int64)
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(windows), batch_size), desc=desc, unit="batch", leave=False):
        batch = windows[start: start + batch_size]
        width = len(batch[0][1])
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, tokens) in enumerate(batch):
            ids[row, : len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits
        for row, (doc, tokens) in enumerate(batch):
            n = len(tokens) - 1
            losses = F.cross_entropy(logits[row, :n].float(), ids[row, 1: n + 1], reduction="sum")
            nll[doc] += float(losses)
            count[doc] += n
    return nll, count


def set_losses(model, document_set, seq_len: int, batch_size: int) -> dict:
    """``{"loss", "ppl", "tokens", "categories": {name: {"loss", "ppl", "tokens"}}}`` for one set."""
    nll, count = document_nll(model, [d.tokens for d in document_set.docs], seq_len, batch_size,
                              desc=f"loss {document_set.spec.name}")
    return summarise(document_set, nll, count)


def summarise(document_set, nll: np.ndarray, count: np.ndarray) -> dict:
    """Per-document (nll, tokens) -> the set's token-weighted loss, and each category's."""
    by_category: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for doc, doc_nll, doc_count in zip(document_set.docs, nll, count):
        by_category[doc.category][0] += doc_nll
        by_category[doc.category][1] += int(doc_count)
    return {**_summary(float(nll.sum()), int(count.sum())),
            "categories": {name: _summary(*totals) for name, totals in sorted(by_category.items())}}


def _summary(nll: float, tokens: int) -> dict:
    loss = nll / tokens if tokens else float("nan")
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": tokens}
