"""The ``evaluation`` section: what a run measures when it ends, and what ``adapt eval`` measures.

The eval sets themselves are ``data.eval`` (held-out files of a source); this section says which
of them are *general* (their loss may rise by at most ``epsilon``: forgetting) and which are the
*domain* (their loss should fall), how to split them into categories, and which generation-based
metrics to add. None of it changes what a run trains, so editing it never blocks a resume.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from adapt.recipe.base import Section


class CompletionEval(Section):
    """Code completion from held-out files, as in the H2LooP embedded CPT evaluation: cut a file
    at a line boundary, greedily generate what follows, compare with what the file has."""

    enabled: bool = True
    max_samples: int = Field(32, ge=1, description="Prefixes per eval set (a few per file, spread over files).")
    max_new_tokens: int = Field(16, ge=1, description="N: tokens generated and compared per prefix.")
    min_prefix_tokens: int = Field(32, ge=1, description="Cuts leave at least this much context before them.")
    seed: int = 0


class InfillEval(Section):
    """Fill-in-the-middle exact match on held-out code, in the sentinel format the run trained with."""

    enabled: bool | Literal["auto"] = Field(
        "auto", description="auto: when a source trains with FIM and the tokenizer has the sentinels.")
    max_samples: int = Field(32, ge=1, description="Samples per eval set, per span kind and per order.")
    spans: list[Literal["line", "random"]] = Field(default_factory=lambda: ["line", "random"])
    orders: list[Literal["psm", "spm"]] = Field(default_factory=lambda: ["psm", "spm"])
    max_span_chars: int = Field(120, ge=1, description="Longest random span (characters).")
    max_new_tokens: int = Field(48, ge=1)
    seed: int = 0


class PassAtKEval(Section):
    """Execution-based pass@k (Chen et al. 2021) on tasks in HumanEval (or MBPP) shape, run in the
    sandbox. ``tasks``: a jsonl relative to the recipe, ``builtin`` (adapt's own small set), or
    None: off, except for GRPO runs, which use their held-out tasks."""

    tasks: str | None = None
    samples: int = Field(10, ge=1, description="n: completions sampled per task.")
    k: list[int] = Field(default_factory=lambda: [1, 5], min_length=1)
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(128, ge=1)
    max_samples: int | None = Field(None, ge=1, description="Tasks evaluated at most (the first ones).")
    timeout_s: float = Field(10.0, gt=0)
    memory_mb: int = Field(512, ge=64)
    workers: int = Field(2, ge=1)
    allow_weak_isolation: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _k_within_samples(self) -> "PassAtKEval":
        if max(self.k) > self.samples:
            raise ValueError(f"k={max(self.k)} needs at least that many samples per task, not {self.samples}")
        return self


class EvaluationSection(Section):
    """Before and after: the base model's numbers (computed once, cached by fingerprint) against
    the trained model's, on every eval set, with a pass/fail line for forgetting."""

    enabled: bool = Field(True, description="Evaluate when the run ends (adapt eval works either way).")
    general: list[str] | None = Field(
        None, description="Eval sets measured for forgetting (default: the set named 'general', and "
                          "sets of a builtin_corpus source); every other set is a domain set.")
    epsilon: float = Field(0.05, gt=0, description="Largest rise of a general set's loss (nats, or a share).")
    tolerance: Literal["absolute", "relative"] = "absolute"
    group_by: dict[str, Literal["folder", "language"] | str] = Field(
        default_factory=dict,
        description="Per eval set, its categories: folder (the top folder under the source's root), language, "
                    "or label:<field> (a jsonl record's field).")
    max_eval_tokens: int | None = Field(None, gt=0, description="Caps each set's tokens (default: its max_tokens).")
    batch_size: int | None = Field(None, gt=0, description="Sequences per forward pass (default: train.batch_size).")
    completion: CompletionEval = Field(default_factory=CompletionEval)
    infill: InfillEval = Field(default_factory=InfillEval)
    pass_at_k: PassAtKEval = Field(default_factory=PassAtKEval)

    @field_validator("group_by")
    @classmethod
    def _known_grouping(cls, group_by: dict[str, str]) -> dict[str, str]:
        for name, how in group_by.items():
            if how not in ("folder", "language") and not (how.startswith("label:") and len(how) > 6):
                raise ValueError(f"group_by.{name}: {how!r} is not folder, language or label:<field>")
        return group_by
