"""The ``diffusion`` section: masked-diffusion training (``train.objective: diffusion``), which
turns an autoregressive model into a discrete-diffusion one, as CoDA (arXiv 2510.03270) did with
Qwen3-1.7B. Used by ``cpt`` and ``sft`` stages; ignored under the default ``clm`` objective."""

from __future__ import annotations

from pydantic import Field, field_validator

from adapt.recipe.base import Section


class DiffusionSection(Section):
    """Masking, CoDA's three strategies and their schedule, and the sampler used in evaluation.

    Each training sequence draws t ~ U(t_min, 1] and masks each maskable token with probability
    t. The strategies apply to a sequence each with its own probability, which rises from
    ``[start, end]``'s start to its end over ``ramp_epochs`` epochs, a step per epoch (CoDA's
    mid-training went from 1/1/5% to 20/20/25%).
    """

    mask_token: str = Field("<|mask|>", description="The absorbing mask token; added to the tokenizer if missing.")
    t_min: float = Field(1e-3, gt=0, lt=1, description="t ~ U(t_min, 1]: keeps the 1/t loss weight finite.")
    prefix: list[float] = Field([0.01, 0.20], description="S1, an unmaskable prefix: probability [start, end].")
    suffix: list[float] = Field(
        [0.01, 0.20], description="S2, a truncated suffix replaced by unmaskable padding: probability [start, end].")
    block: list[float] = Field(
        [0.05, 0.25], description="S3, masking contiguous spans at the same overall rate: probability [start, end].")
    block_lengths: list[int] = Field([2, 4, 8], min_length=1, description="S3's span lengths, drawn uniformly.")
    ramp_epochs: int = Field(1, ge=1, description="Epochs over which the strategies' probabilities reach their end.")
    eval_t: list[float] = Field(
        [0.15, 0.5, 0.85], min_length=1, description="Mask rates at which eval loss is measured (fixed, seeded).")
    sample_steps: int = Field(16, ge=1, description="Unmasking steps of the sampler (infill in `adapt eval`).")

    @field_validator("prefix", "suffix", "block")
    @classmethod
    def _ramp(cls, value: list[float]) -> list[float]:
        if len(value) != 2 or not all(0.0 <= p <= 1.0 for p in value):
            raise ValueError("give [start, end], two probabilities between 0 and 1")
        return value

    @field_validator("block_lengths")
    @classmethod
    def _lengths(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError("span lengths are at least 1")
        return value

    @field_validator("eval_t")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        if not all(0.0 < t <= 1.0 for t in value):
            raise ValueError("mask rates are in (0, 1]")
        return value
