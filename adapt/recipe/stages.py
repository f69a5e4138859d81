"""Recipe sections of the post-training stage kinds: SFT, DPO and GRPO, and their row sources.

Each section maps onto trl's own config (``SFTConfig``, ``DPOConfig``, ``GRPOConfig``); the
fields here are the ones recipes usually set, and ``train.trainer_args`` passes any other field
of that config through, checked by name.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, model_validator

from adapt.recipe.base import HeldOut, Section

BUILTIN_TASKS = "builtin"


class RowsSource(Section):
    """Rows read through `datasets`: jsonl, json, parquet or arrow files, a ``save_to_disk``
    directory, or a hub dataset by name (hub loading needs the network)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    path: str | None = Field(None, description="Files, a glob, or a save_to_disk directory, relative to the recipe.")
    hub: str | None = Field(None, description="A dataset name for datasets.load_dataset.")
    split: str = "train"
    columns: dict[str, str] = Field(
        default_factory=dict, description="adapt's field name -> the dataset's column, e.g. {output: answer}.")
    heldout: HeldOut = Field(default_factory=HeldOut)

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of path or hub")
        return self


class InstructionsSource(RowsSource):
    """Instruction-tuning rows for ``kind: sft``.

    Formats: ``messages`` (a list of ``{role, content}``), ``prompt_completion`` (strings, or
    message lists), ``alpaca`` (``instruction``, optional ``input``, ``output``, optional
    ``system``). ``auto`` picks the one whose fields the dataset has.
    """

    kind: Literal["instructions"]
    format: Literal["auto", "messages", "prompt_completion", "alpaca"] = "auto"
    system: str | None = Field(None, description="A system message put before alpaca rows that have none.")


class PreferencesSource(RowsSource):
    """Preference pairs for ``kind: dpo``: ``prompt``, ``chosen``, ``rejected`` as strings or
    message lists; without ``prompt``, ``chosen`` and ``rejected`` are whole conversations whose
    shared beginning is the prompt."""

    kind: Literal["preferences"]


class CodeTasksSource(Section):
    """Programming tasks for ``kind: grpo``, in HumanEval shape (``prompt``, ``entry_point``,
    ``test``) or MBPP shape (``text``, ``test_list``); ``builtin`` is adapt's own small set."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["code_tasks"]
    path: str = Field(BUILTIN_TASKS, description="A jsonl file relative to the recipe, or 'builtin'.")
    heldout: HeldOut = Field(default_factory=lambda: HeldOut(fraction=0.0))


class SftSection(Section):
    """Instruction tuning with trl's ``SFTTrainer``."""

    assistant_only_loss: bool = Field(
        True, description="Loss on assistant (or completion) tokens only; the prompt's labels are masked.")
    packing: bool = Field(
        True, description="Pack examples into train.seq_len rows (trl's best-fit decreasing) with no "
                          "attention across examples.")


# trl 1.16's DPOConfig.loss_type names.
DpoLoss = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


class DpoSection(Section):
    """Direct preference optimisation with trl's ``DPOTrainer`` (Rafailov et al. 2023)."""

    beta: float = Field(0.1, gt=0, description="Strength of the KL penalty towards the reference.")
    loss_type: Union[DpoLoss, list[DpoLoss]] = Field(
        "sigmoid", description="trl's DPO loss (sigmoid is DPO's), or a list combined with trainer_args.loss_weights.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="cDPO: assumed share of flipped labels.")
    reference: Literal["auto", "copy"] = Field(
        "auto", description="auto: the base without adapters under LoRA/QLoRA, a frozen copy of the base "
                            "for full fine-tuning; copy: always a frozen copy.")


class RewardSpec(Section):
    """One reward function: a built-in by ``name``, or the user's by ``function: module:function``."""

    name: Literal["execution", "format", "length"] | None = None
    function: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    weight: float = 1.0

    @model_validator(mode="after")
    def _one_reward(self):
        if (self.name is None) == (self.function is None):
            raise ValueError("give exactly one of name (execution, format, length) or function (module:function)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.function.rsplit(":", 1)[1]


class SandboxSection(Section):
    """Limits for running model-written code (see ``adapt.sandbox``)."""

    timeout_s: float = Field(10.0, gt=0)
    memory_mb: int = Field(512, ge=64, description="Address space per process; up to 16 processes.")
    workers: int = Field(2, ge=1, description="Programs run at once.")
    allow_weak_isolation: bool = Field(
        False, description="Run where the kernel gives no namespaces, with rlimits only (see docs/sandbox.md).")


def _default_rewards() -> list[RewardSpec]:
    return [RewardSpec(name="execution"), RewardSpec(name="format", weight=0.2)]


class GrpoSection(Section):
    """Group relative policy optimisation with trl's ``GRPOTrainer`` (Shao et al. 2024), rewarded by
    running the model's code against each task's tests."""

    rewards: list[RewardSpec] = Field(default_factory=_default_rewards, min_length=1)
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (the group).")
    max_new_tokens: int = Field(128, gt=0)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.0, ge=0, description="KL penalty towards the reference; 0 needs no reference model.")
    use_vllm: bool | None = Field(None, description="null: vllm when it is installed and a GPU is present.")
    sandbox: SandboxSection = Field(default_factory=SandboxSection)

    @model_validator(mode="after")
    def _distinct_rewards(self):
        labels = [r.label for r in self.rewards]
        if len(set(labels)) < len(labels):
            raise ValueError(f"two rewards share a name ({', '.join(labels)}); trl logs each under its name")
        return self
