"""Noising batches for masked-diffusion training: each row draws t ~ U(t_min, 1] and each
maskable token is replaced by the mask token with probability t.

Maskable tokens are those with a label (padding and SFT prompts have -100, so a prompt is always
an unmaskable prefix), except position 0, which has no position before it to be predicted from.
CoDA's strategies apply to a row each with its own probability (``DiffusionSection``):

- S1: a random-length prefix is made unmaskable;
- S2: a random-length suffix is replaced by padding, which is neither masked nor scored;
- S3: masks fall in contiguous spans (lengths from ``block_lengths``) instead of independently,
  at the same overall rate: exactly round(t x maskable) tokens.

Documents packed into one CPT block attend to each other here, as in LLaDA's pretraining.
"""

from __future__ import annotations

import math

import torch
from transformers import default_data_collator

EVAL_INDEX = "diffusion_eval_index"  # marks eval rows: each row's noise is seeded by its index


class DiffusionCollator:
    """Batches -> noised batches: ``input_ids`` with masks, ``labels`` the original tokens at the
    masked positions (else -100), ``diffusion_t`` per row and ``diffusion_tokens`` (the tokens
    each row could have masked, after S1 and S2: the loss's normaliser)."""

    def __init__(self, spec, mask_id: int, pad_id: int, base_collate=default_data_collator, seed: int = 0):
        self.spec, self.mask_id, self.pad_id, self.base_collate = spec, mask_id, pad_id, base_collate
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0.0  # passes over the training data so far, set by EpochCallback

    def probabilities(self) -> dict[str, float]:
        """At epoch k (from 0): start + (end - start) x min(1, k / ramp_epochs)."""
        progress = min(1.0, math.floor(self.epoch) / self.spec.ramp_epochs)
        return {name: start + (end - start) * progress
                for name, (start, end) in (("prefix", self.spec.prefix), ("suffix", self.spec.suffix),
                                           ("block", self.spec.block))}

    def __call__(self, features: list[dict]) -> dict:
        indexes = [f.pop(EVAL_INDEX) for f in features] if EVAL_INDEX in features[0] else None
        batch = self.base_collate(features)
        if indexes is None:
            return self.noise(batch, [self.generator] * len(features), self.probabilities())
        # Eval: a row gets the same noise at every evaluation, however the rows are batched or
        # sharded, at the fixed rates eval_t and without the strategies.
        t = torch.tensor([self.spec.eval_t[i % len(self.spec.eval_t)] for i in indexes])
        return self.noise(batch, [torch.Generator().manual_seed(i) for i in indexes], NO_STRATEGIES, t)

    def noise(self, batch: dict, generators: list[torch.Generator], probabilities: dict[str, float],
              t: torch.Tensor | None = None) -> dict:
        """``generators``: one per row (the same one repeated is fine); ``t``: per row, else drawn."""
        ids, labels = batch["input_ids"].clone(), batch["labels"]
        maskable = labels != -100
        maskable[:, 0] = False
        attention = batch.get("attention_mask")
        if attention is None:  # CPT blocks: only padding is unlabelled
            attention = (labels != -100).long()
            attention[:, 0] = 1
        rows, width = ids.shape
        if t is None:
            t = torch.stack([self.spec.t_min + (1.0 - self.spec.t_min) * (1.0 - torch.rand((), generator=g))
                             for g in generators])
        masked = torch.zeros_like(maskable)
        counts = torch.zeros(rows, dtype=torch.long)
        for row, generator in enumerate(generators):
            allowed = maskable[row].clone()
            draw = torch.rand(3, generator=generator)
            if draw[0] < probabilities["prefix"]:
                allowed[: int(torch.randint(1, width, (1,), generator=generator))] = False
            if draw[1] < probabilities["suffix"]:
                cut = int(torch.randint(1, width, (1,), generator=generator))
                ids[row, cut:] = self.pad_id
                allowed[cut:] = False
            counts[row] = allowed.sum()
            if draw[2] < probabilities["block"]:
                masked[row] = block_mask(allowed, float(t[row]), self.spec.block_lengths, generator)
            else:
                masked[row] = allowed & (torch.rand(width, generator=generator) < t[row])
        out = {key: value for key, value in batch.items() if key not in ("position_ids", "labels")}
        out.update(input_ids=torch.where(masked, self.mask_id, ids), attention_mask=attention,
                   labels=torch.where(masked, batch["input_ids"], -100), diffusion_t=t.float(),
                   diffusion_tokens=counts)
        return out


NO_STRATEGIES = {"prefix": 0.0, "suffix": 0.0, "block": 0.0}


def block_mask(allowed: torch.Tensor, t: float, lengths: list[int], generator: torch.Generator) -> torch.Tensor:
    """Exactly round(t x allowed) positions, in spans of the given lengths started at random
    unmasked allowed positions (a span stops at a position that is not allowed)."""
    masked = torch.zeros_like(allowed)
    target = round(t * int(allowed.sum()))
    count = 0
    while count < target:
        free = torch.nonzero(allowed & ~masked).flatten()
        start = int(free[torch.randint(len(free), (1,), generator=generator)])
        length = lengths[int(torch.randint(len(lengths), (1,), generator=generator))]
        for position in range(start, min(start + length, allowed.numel())):
            if not allowed[position] or count == target:
                break
            if not masked[position]:
                masked[position] = True
                count += 1
    return masked
