"""Which eval sets a run has, and their role: *domain* (its loss should fall) or *general* (its
rise is forgetting, held to ``evaluation.epsilon``).

The sets are ``data.eval`` when the recipe gives it; otherwise every document source is a set of
its own held-out files. Where no set is a general one and the base is the built-in model, its
held-out standard-library files are added as ``general`` (the corpus it was pretrained on, which
is what it can forget).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapt.recipe.schema import DOCUMENT_KINDS, EvalSet, Recipe

GENERAL = "general"
BUILTIN_CORPUS = "builtin_corpus"  # the source of the implicit general set: no name in data.sources


@dataclass(frozen=True)
class EvalSpec:
    name: str
    source: str  # a data.sources name, or BUILTIN_CORPUS
    max_tokens: int
    max_tokens_per_file: int
    general: bool
    key: str  # the recipe key an error about the set names

    @property
    def role(self) -> str:
        return GENERAL if self.general else "domain"


def eval_specs(recipe: Recipe) -> list[EvalSpec]:
    """The run's eval sets of documents (sets over row sources, such as SFT instructions, are the
    trainer's own and not here), in recipe order."""
    kinds = {s.name: s.kind for s in recipe.data.sources}
    chosen = recipe.evaluation.general

    def spec(name: str, source: str, caps: EvalSet, key: str) -> EvalSpec:
        general = name in chosen if chosen is not None else (
            name == GENERAL or kinds.get(source, BUILTIN_CORPUS) == BUILTIN_CORPUS)
        return EvalSpec(name, source, caps.max_tokens, caps.max_tokens_per_file, general, key)

    if recipe.data.eval:
        specs = [spec(name, s.source, s, f"data.eval.{name}") for name, s in recipe.data.eval.items()
                 if kinds[s.source] in DOCUMENT_KINDS]
    else:
        specs = [spec(name, name, EvalSet(source=name), f"data.sources.{i}.heldout")
                 for i, (name, kind) in enumerate(kinds.items()) if kind in DOCUMENT_KINDS]
    if recipe.model.builtin_family and not any(s.general for s in specs):
        taken = set(kinds) | set(recipe.data.eval)
        specs.append(spec(GENERAL if GENERAL not in taken else BUILTIN_CORPUS, BUILTIN_CORPUS,
                          EvalSet(source=BUILTIN_CORPUS, max_tokens=16_000, max_tokens_per_file=1_000),
                          "evaluation.general"))
    return specs
