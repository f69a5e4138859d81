"""Token-level mixtures: draw blocks from each source so that token shares match the targets.

Shares are of tokens, not documents: every source is packed into blocks of the same length,
so a share of blocks is a share of tokens. A source smaller than its share is repeated, in
fresh shuffles, up to ``max_repetition`` passes; asking for more is an error before training
(as OLMo-core's source mixtures do) rather than a silent shortfall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from adapt.recipe.schema import TrainSection


class MixtureError(ValueError):
    def __init__(self, source: str, needed: int, available: int, max_repetition: float, unit: str = "blocks"):
        self.source, self.needed, self.available, self.max_repetition = source, needed, available, max_repetition
        super().__init__(f"source {source!r} needs {needed} {unit} but has {available} "
                         f"(max_repetition {max_repetition:g} allows {int(available * max_repetition)})")


@dataclass
class MixturePlan:
    """Which block of which source goes where in the training order."""

    order: list[tuple[str, int]]
    counts: dict[str, int]
    repetition: dict[str, float]


def allocate(shares: dict[str, float], total_blocks: int) -> dict[str, int]:
    """Split ``total_blocks`` by share with the largest-remainder method, so counts sum exactly."""
    active = {name: share for name, share in shares.items() if share > 0}
    exact = {name: share * total_blocks for name, share in active.items()}
    counts = {name: int(np.floor(v)) for name, v in exact.items()}
    by_remainder = sorted(active, key=lambda n: exact[n] - counts[n], reverse=True)
    for name in by_remainder[: total_blocks - sum(counts.values())]:
        counts[name] += 1
    return counts


def plan_mixture(available: dict[str, int], shares: dict[str, float], total_blocks: int,
                 max_repetition: float, seed: int) -> MixturePlan:
    rng = np.random.default_rng(seed)
    counts = allocate(shares, total_blocks)
    order: list[tuple[str, int]] = []
    for name, needed in counts.items():
        have = available[name]
        if have == 0 or needed > have * max_repetition + 1e-9:
            raise MixtureError(name, needed, have, max_repetition)
        passes = [rng.permutation(have) for _ in range(-(-needed // have))]
        order.extend((name, int(i)) for i in np.concatenate(passes)[:needed])
    shuffled = [order[i] for i in rng.permutation(len(order))]
    repetition = {name: counts[name] / available[name] for name in counts}
    return MixturePlan(shuffled, counts, repetition)


def draw_tokens(lengths: dict[str, np.ndarray], targets: dict[str, int], max_repetition: float,
                seed: int) -> MixturePlan:
    """Like ``plan_mixture``, for items of different lengths (SFT examples): take each source's items, in
    fresh shuffles, until their tokens reach its target, so that shares hold in tokens rather than
    in items. A source overshoots its target by less than one item."""
    rng = np.random.default_rng(seed)
    order: list[tuple[str, int]] = []
    counts: dict[str, int] = {}
    for name, target in targets.items():
        sizes = np.asarray(lengths[name], dtype=np.int64)
        total = int(sizes.sum())
        if total == 0 or target > total * max_repetition + 1e-9:
            raise MixtureError(name, target, total, max_repetition, unit="tokens")
        shuffles = np.concatenate([rng.permutation(sizes.size) for _ in range(math.ceil(target / total) + 1)])
        counts[name] = min(int(np.searchsorted(np.cumsum(sizes[shuffles]), target)) + 1, shuffles.size)
        order.extend((name, int(i)) for i in shuffles[: counts[name]])
    shuffled = [order[i] for i in rng.permutation(len(order))]
    return MixturePlan(shuffled, counts, {name: counts[name] / len(lengths[name]) for name in counts})


def epoch_tokens(source_tokens: dict[str, int], shares: dict[str, float]) -> int:
    """Tokens in one epoch: the largest budget in which no source with a share repeats."""
    return int(min(source_tokens[name] / share for name, share in shares.items() if share > 0))


def budget_tokens(train: TrainSection, source_tokens: dict[str, int], shares: dict[str, float],
                  world_size: int = 1) -> int:
    """Tokens the recipe's budget asks for: max_steps' worth, max_tokens, or epochs (default 1)."""
    if train.max_steps is not None:
        return train.max_steps * train.tokens_per_step * world_size
    if train.max_tokens is not None:
        return train.max_tokens
    return int((train.epochs or 1.0) * epoch_tokens(source_tokens, shares))


def budget_steps(train: TrainSection, source_tokens: dict[str, int], shares: dict[str, float],
                 world_size: int = 1) -> int:
    """Optimizer steps for the recipe's budget: max_steps, max_tokens, or epochs (default 1)."""
    if train.max_steps is not None:
        return train.max_steps
    per_step = train.tokens_per_step * world_size
    return max(1, math.ceil(budget_tokens(train, source_tokens, shares, world_size) / per_step))


def steps_over_rows(train: TrainSection, rows: int, passes: float | None = None, world_size: int = 1) -> int:
    """Optimizer steps for a budget counted in rows (examples, preference pairs, completions):
    ``max_steps``, or ``passes`` (default ``train.epochs``, else 1) passes over ``rows``."""
    if train.max_steps is not None:
        return train.max_steps
    passes = passes if passes is not None else (train.epochs or 1.0)
    return max(1, math.ceil(passes * rows / (train.batch_size * train.grad_accum * world_size)))
