"""Sampling from a masked-diffusion model: iterative unmasking with a fixed number of steps,
filling the most confident masked positions first (Dream, CoDA), and infilling with it."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def unmask(model, ids: torch.Tensor, mask_id: int, steps: int, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Fill every ``mask_id`` in ``ids`` (rows x length) in ``steps`` forward passes at most.
    At step s each row fills ceil(remaining / steps left) positions: those whose most likely
    token is most probable. Position 0 must not be masked (it predicts position 1)."""
    ids = ids.clone()
    masked = ids == mask_id
    if masked[:, 0].any():
        raise ValueError("position 0 cannot be masked: start the sequence with a real token (e.g. EOS)")
    device = next(model.parameters()).device
    for step in range(steps):
        remaining = masked.sum(dim=1)
        if int(remaining.max()) == 0:
            break
        logits = model(input_ids=ids.to(device),
                       attention_mask=None if attention_mask is None else attention_mask.to(device)).logits
        logits = logits[:, :-1].float()
        logits[..., mask_id] = float("-inf")  # the mask is never a prediction
        confidence, prediction = (x.cpu() for x in logits.softmax(dim=-1).max(dim=-1))  # not the whole vocabulary
        confidence = torch.cat([torch.full((ids.shape[0], 1), float("-inf")), confidence], dim=1)
        prediction = torch.cat([ids[:, :1], prediction], dim=1)
        confidence[~masked] = float("-inf")
        for row in range(ids.shape[0]):
            k = math.ceil(int(remaining[row]) / (steps - step))
            if k == 0:
                continue
            chosen = confidence[row].topk(k).indices
            ids[row, chosen] = prediction[row, chosen]
            masked[row, chosen] = False
    return ids


def infill(model, tokenizer, prefixes: list[list[int]], suffixes: list[list[int]], lengths: list[int],
           mask_id: int, steps: int) -> list[list[int]]:
    """The middle tokens generated between each prefix and suffix, of the requested lengths, in
    one batch (right-padded, padding masked out of attention)."""
    rows = [[tokenizer.eos_token_id] + p + [mask_id] * n + s for p, s, n in zip(prefixes, suffixes, lengths)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
    filled = unmask(model, ids, mask_id, steps, attention)
    return [filled[i, 1 + len(p): 1 + len(p) + n].tolist() for i, (p, n) in enumerate(zip(prefixes, lengths))]
