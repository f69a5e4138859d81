"""The recipe: small typed sections that map onto the libraries' own configs.

Every section forbids unknown keys, so a typo is an error with a "did you mean" hint
(see ``adapt.recipe.load``) instead of a silent default. ``kind`` picks the stage;
the sections of the post-training kinds are in ``adapt.recipe.stages``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from adapt.recipe.base import HeldOut, Section
from adapt.recipe.diffusion import DiffusionSection
from adapt.recipe.evaluation import EvaluationSection
from adapt.recipe.model import BUILTIN_PREFIX, BuiltinModel, ModelSection, RopeScaling  # noqa: F401 (re-exported)
from adapt.recipe.stages import (CodeTasksSource, DpoSection, GrpoSection, InstructionsSource,
                                 PreferencesSource, SftSection)


# --------------------------------------------------------------------------- adapter


class AdapterSection(Section):
    """How the base model is adapted: all weights, LoRA, or LoRA over a 4-bit base (QLoRA)."""

    method: Literal["full", "lora", "qlora"] = "lora"
    r: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Union[Literal["all-linear"], list[str]] = "all-linear"
    use_rslora: bool = False
    use_dora: bool = False
    modules_to_save: list[str] | None = None
    # QLoRA: NF4 with double quantisation, as in Dettmers et al. 2023.
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


# --------------------------------------------------------------------------- data


class FimSection(Section):
    """Fill-in-the-middle for code (Bavarian et al. 2022): a share ``rate`` of whole documents is
    rearranged prefix-suffix-middle, ``spm_rate`` of those in SPM order. Code Llama used 0.9/0.5."""

    rate: float = Field(0.5, ge=0, le=1)
    spm_rate: float = Field(0.5, ge=0, le=1)
    seed: int = 0


class FilesSource(Section):
    """Local text or code files matched by globs under a root directory or an installed package."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["files"]
    root: str | None = Field(None, description="Directory the globs are relative to (default: the recipe's).")
    package: str | None = Field(None, description="Use an installed Python package's directory as root.")
    include: list[str] = Field(default_factory=lambda: ["**/*"], min_length=1)
    exclude: list[str] = Field(default_factory=list)
    heldout: HeldOut = Field(default_factory=HeldOut)
    fim: FimSection | None = None
    licence: str | None = Field(None, description="SPDX id for files without one (default: the root's LICENSE).")

    @model_validator(mode="after")
    def _one_root(self) -> "FilesSource":
        if self.root and self.package:
            raise ValueError("give either root or package, not both")
        return self


class GitSource(Section):
    """The tracked files of a local git repository at a revision (read with git, no checkout)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["git"]
    repo: str = Field(description="Path to the repository, relative to the recipe's folder.")
    revision: str = "HEAD"
    include: list[str] = Field(default_factory=lambda: ["**/*"], min_length=1)
    exclude: list[str] = Field(default_factory=list)
    heldout: HeldOut = Field(default_factory=HeldOut)
    fim: FimSection | None = None
    licence: str | None = Field(None, description="SPDX id for files without one (default: the repo's LICENSE).")


class JsonlSource(Section):
    """JSON-lines files with one document per line in ``text_field``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["jsonl"]
    paths: list[str] = Field(min_length=1, description="Files or globs, relative to the recipe.")
    text_field: str = "text"
    heldout: HeldOut = Field(default_factory=HeldOut)
    fim: FimSection | None = None


class DatasetSource(Section):
    """Rows of a `datasets` dataset: parquet, arrow or json files, a ``save_to_disk`` directory,
    or a hub dataset by name (the same code path; hub loading needs the network)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["dataset"]
    path: str | None = Field(None, description="Files, a glob, or a save_to_disk directory, relative to the recipe.")
    hub: str | None = Field(None, description="A dataset name for datasets.load_dataset.")
    split: str = "train"
    text_field: str = "text"
    heldout: HeldOut = Field(default_factory=HeldOut)
    fim: FimSection | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> "DatasetSource":
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of path or hub")
        return self


class BuiltinCorpusSource(Section):
    """The built-in base model's own pretraining corpus; its held-out part is a fixed file list.

    With the built-in model this is the natural replay source and general eval set.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["builtin_corpus"]


Source = Annotated[Union[FilesSource, GitSource, JsonlSource, DatasetSource, BuiltinCorpusSource,
                         InstructionsSource, PreferencesSource, CodeTasksSource],
                   Field(discriminator="kind")]
# Sources of documents (CPT, and rehearsal in SFT); the others hold rows for one stage kind.
DOCUMENT_KINDS = ("files", "git", "jsonl", "dataset", "builtin_corpus")


class FilterSection(Section):
    """Drop files that teach a code model nothing (see ``adapt.data.curation.filters``)."""

    max_file_bytes: int = Field(1_000_000, gt=0, description="Larger files are skipped unread.")
    max_line_length: int = Field(1000, ge=0)
    max_avg_line_length: float = Field(200.0, ge=0)
    min_alnum_fraction: float = Field(0.25, ge=0, le=1)
    drop_generated: bool = True
    drop_vendored: bool = True
    languages: list[str] | None = None
    exclude_languages: list[str] = Field(default_factory=list)


class DedupSection(Section):
    """Exact dedup by content hash and near-dedup by MinHash LSH (BigCode: 5-gram shingles)."""

    exact: bool = True
    near: bool = True
    threshold: float = Field(0.85, gt=0, le=1)
    ngram: int = Field(5, gt=0)
    num_perm: int = Field(256, ge=16)


class LicenceSection(Section):
    """Licence policy on SPDX ids; ``deny`` wins over ``allow``; None allows every licence."""

    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)
    unknown: Literal["keep", "drop"] = "keep"


class DecontaminationSection(Section):
    """Drop training documents that share long n-grams with the held-out (eval) documents."""

    enabled: bool = True
    ngram: int = Field(32, ge=8, description="Words per n-gram.")
    max_overlap: float = Field(0.5, ge=0, le=1, description="Largest share of a document's n-grams seen in eval.")


class CurationSection(Section):
    """What of an organisation's code may enter training; every step is counted in the data report."""

    filters: FilterSection = Field(default_factory=FilterSection)
    dedup: DedupSection = Field(default_factory=DedupSection)
    secrets: Literal["redact", "drop", "off"] = "redact"
    licences: LicenceSection = Field(default_factory=LicenceSection)
    decontamination: DecontaminationSection = Field(default_factory=DecontaminationSection)


class EvalSet(Section):
    """A named evaluation set: the held-out files of one source, capped so no file dominates."""

    source: str
    max_tokens: int = Field(50_000, gt=0)
    max_tokens_per_file: int = Field(4_000, gt=0)


class DataSection(Section):
    sources: list[Source] = Field(min_length=1)
    mixture: Union[dict[str, Annotated[float, Field(ge=0, le=1)]], str, None] = Field(
        None, description="Token shares per source summing to 1, or a mixture file path."
    )
    max_repetition: float = Field(4.0, ge=1, description="Most passes over any source's tokens.")
    packing: Literal["documents", "blocks"] = Field(
        "documents", description="documents: no attention across document boundaries; blocks: classic CPT blocks."
    )
    curation: CurationSection = Field(default_factory=CurationSection)
    eval: dict[str, EvalSet] = Field(default_factory=dict)
    seed: int = 0

    def source(self, name: str):
        return next(s for s in self.sources if s.name == name)


class MixtureFile(Section):
    """A mixture kept in its own file under ``mixtures/``; the planner writes the same format."""

    mixture: dict[str, Annotated[float, Field(ge=0, le=1)]]
    description: str | None = None
    plan: dict[str, Any] | None = None


# --------------------------------------------------------------------------- train


class TrainSection(Section):
    """The training loop's settings; a transformers ``Trainer`` runs underneath.

    The budget is one of ``max_tokens``, ``max_steps`` or ``epochs``. Tokens are the unit the
    planner and the scaling-law papers use; steps and epochs are converted to tokens.
    """

    output_dir: str | None = Field(None, description="Run directory (default: runs/<recipe name>).")
    seq_len: int = Field(512, gt=0)
    objective: Literal["clm", "diffusion"] = Field(
        "clm", description="clm: next-token prediction; diffusion: masked diffusion (see the diffusion section).")
    batch_size: int = Field(8, gt=0, description="Sequences per device per step.")
    grad_accum: int = Field(1, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    lr: float = Field(2e-4, gt=0)
    schedule: Literal["cosine", "linear", "constant", "constant_with_warmup", "warmup_stable_decay"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    decay_ratio: float = Field(0.1, ge=0, le=1, description="Share of steps in the final decay (WSD only).")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Final lr as a share of lr (WSD only).")
    optimizer: Literal[
        "adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
        "adafactor", "sgd", "lion_8bit", "paged_lion_8bit",
    ] = "adamw_torch"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the device supports it (CUDA, or CPUs with AVX-512 bf16)."
    )
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = Field(10, gt=0)
    eval_steps: int = Field(50, gt=0)
    save_steps: int = Field(100, gt=0)
    save_total_limit: int | None = Field(2, gt=0)
    keep_best: bool = Field(
        False, description="Keep the checkpoint with the lowest domain loss among those within the forgetting "
                           "tolerance (evaluation.epsilon) as the final model; needs save_steps a multiple of eval_steps.")
    trainer_args: dict[str, Any] = Field(
        default_factory=dict, description="Other transformers TrainingArguments, checked by name."
    )

    @model_validator(mode="after")
    def _one_budget(self) -> "TrainSection":
        given = [k for k in ("max_tokens", "max_steps", "epochs") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"set only one budget, not {' and '.join(given)}")
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size * self.grad_accum


# --------------------------------------------------------------------------- tracking


class TrackingSection(Section):
    """MLflow tracking. The default store is a local sqlite file under ``$ADAPT_HOME/mlflow``."""

    enabled: bool = True
    uri: str | None = Field(None, description="An MLflow tracking URI, e.g. http://host:5000.")
    experiment: str = "adapt"
    run_name: str | None = None
    log_model: bool = Field(True, description="Log the final adapter or model as an artifact.")
    flush_timeout_s: float = Field(30.0, ge=0)


# --------------------------------------------------------------------------- plan


class PlanSection(Section):
    """``adapt plan``: short pilot runs at a ladder of domain shares, then the critical mixture
    ratio (Gu et al. 2024) at the target budget. See ``adapt.planner``."""

    domain_eval: str = Field("domain", description="The eval set whose loss the domain share should lower.")
    general_eval: str = Field("general", description="The eval set whose rise must stay within epsilon.")
    ratios: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 0.9, 1.0], min_length=3,
        description="Domain shares of the pilots (at least 3 distinct).")
    pilot_tokens: int | None = Field(None, gt=0, description="Each pilot's budget (default: target_tokens / 4).")
    target_tokens: int | None = Field(None, gt=0, description="The budget to plan for (default: the recipe's).")
    eval_steps: int = Field(10, gt=0, description="Pilots evaluate every this many steps.")
    schedule: Literal["constant_with_warmup", "constant", "recipe"] = Field(
        "constant_with_warmup",
        description="Pilots' lr schedule. Constant: every prefix of a pilot is a valid shorter budget.")
    epsilon: float = Field(0.05, gt=0, description="Largest general-loss rise allowed (nats, or a share if relative).")
    tolerance: Literal["absolute", "relative"] = "absolute"
    lagrange_lambda: float = Field(100.0, gt=0, description="λ of the CMR Lagrangian (the paper used 100-7000).")
    constraint: Literal["tolerance", "lagrangian"] = Field(
        "tolerance", description="tolerance: the largest ratio within epsilon; lagrangian: also feasible at λ.")
    bootstrap: int = Field(50, ge=0, description="Bootstrap refits for the confidence interval.")
    refine: int = Field(1, ge=0, description="Extra pilots, each at the CMR found so far, where the pilots around it are far apart.")
    refine_gap: float = Field(0.1, gt=0, le=1, description="Pilots further apart than this around the CMR get one between them.")
    output: str | None = Field(None, description="The plan file (default: mixtures/<name>.plan.yaml).")

    @field_validator("ratios")
    @classmethod
    def _distinct_ratios(cls, ratios: list[float]) -> list[float]:
        if len(set(ratios)) < 3:
            raise ValueError(f"give at least 3 distinct ratios, not {sorted(set(ratios))}, e.g. [0, 0.5, 0.75, 1]")
        return ratios


# --------------------------------------------------------------------------- recipe


# Options added after runs were first recorded: left out of a run's record while unset, so that
# older runs still resume and older pilots keep their keys.
LATER_OPTIONS = {"model": ModelSection.LATER_OPTIONS, "train": {"keep_best": False, "objective": "clm"}}


class Recipe(Section):
    """One YAML recipe: ``kind`` is the stage (cpt: continual pretraining; sft: instruction tuning;
    dpo: preference optimisation; grpo: RL with verifiable rewards)."""

    name: str | None = Field(None, description="Run name (default: the recipe file's stem).")
    kind: Literal["cpt", "sft", "dpo", "grpo"] = "cpt"
    model: ModelSection = Field(default_factory=ModelSection)
    adapter: AdapterSection = Field(default_factory=AdapterSection)
    data: DataSection
    train: TrainSection = Field(default_factory=TrainSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    plan: PlanSection = Field(default_factory=PlanSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    sft: SftSection = Field(default_factory=SftSection)
    dpo: DpoSection = Field(default_factory=DpoSection)
    grpo: GrpoSection = Field(default_factory=GrpoSection)
    diffusion: DiffusionSection = Field(default_factory=DiffusionSection)

    @model_validator(mode="after")
    def _one_setting_each(self) -> "Recipe":
        # A recipe that plans with a tolerance is judged by it, and a GRPO run's pass@k runs in the
        # sandbox it trains with, unless the evaluation section says otherwise.
        if "epsilon" in self.plan.model_fields_set and "epsilon" not in self.evaluation.model_fields_set:
            self.evaluation.epsilon, self.evaluation.tolerance = self.plan.epsilon, self.plan.tolerance
        pass_at_k, sandbox = self.evaluation.pass_at_k, self.grpo.sandbox
        if self.kind == "grpo" and "allow_weak_isolation" not in pass_at_k.model_fields_set:
            pass_at_k.allow_weak_isolation = sandbox.allow_weak_isolation
        return self

    def record(self) -> dict:
        """The recipe as a run stores, compares and logs it: without the sections of the other
        stage kinds, and for CPT without the chat template, so that runs and pilots begun before
        those keys existed still resume (and keep their pilot keys)."""
        unused = {kind for kind in ("sft", "dpo", "grpo") if kind != self.kind}
        if self.train.objective != "diffusion":
            unused.add("diffusion")
        data = self.model_dump(mode="json", exclude=unused)
        if self.kind == "cpt":
            data["model"].pop("chat_template")
        for section, options in LATER_OPTIONS.items():
            for key, unset in options.items():
                if data[section][key] == unset:
                    data[section].pop(key)
        return data
