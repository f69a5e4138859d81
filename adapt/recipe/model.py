"""The ``model`` section: which base model, how it is loaded, and its RoPE settings for
long-context extension (transformers 5 keeps them in ``config.rope_parameters``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from adapt.recipe.base import Section

BUILTIN_PREFIX = "builtin"


class RopeScaling(Section):
    """A RoPE scaling of transformers' (``transformers.modeling_rope_utils``); the keys are its own.
    llama3 needs ``original_max_position_embeddings``, ``low_freq_factor`` and ``high_freq_factor``."""

    type: Literal["linear", "dynamic", "yarn", "llama3"]
    factor: float = Field(gt=1)
    original_max_position_embeddings: int | None = Field(None, gt=0)
    low_freq_factor: float | None = Field(None, gt=0)
    high_freq_factor: float | None = Field(None, gt=0)
    beta_fast: float | None = Field(None, gt=0)
    beta_slow: float | None = Field(None, gt=0)

    def parameters(self) -> dict:
        """The ``rope_parameters`` entries this scaling sets."""
        return {"rope_type": self.type, **self.model_dump(exclude={"type"}, exclude_none=True)}


class BuiltinModel(Section):
    """Options of the built-in base model that adapt builds and pretrains locally.

    The defaults give a ~5M-parameter Llama-style model pretrained for a few minutes on the
    Python standard library. Sizes are multiples of 64: they run faster on CPU and
    bitsandbytes' CPU kernels need them.
    """

    hidden_size: int = Field(256, gt=0, multiple_of=64)
    num_layers: int = Field(4, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int = Field(704, gt=0, multiple_of=64)
    vocab_size: int = Field(8192, ge=512)
    max_position_embeddings: int = Field(2048, gt=0)
    corpus: list[str] = Field(
        default_factory=lambda: ["stdlib"],
        description="Pretraining corpus: 'stdlib' (this Python's standard library) and/or directories.",
    )
    pretrain_tokens: int = Field(
        2_000_000, ge=0, description="Tokens of pretraining; 0 keeps random weights (for throughput benchmarks)."
    )
    pretrain_seq_len: int = Field(256, gt=0)
    pretrain_batch_size: int = Field(8, gt=0)
    pretrain_lr: float = Field(3e-3, gt=0)
    seed: int = 0


class ModelSection(Section):
    """The base model: a hub id, a local ``save_pretrained`` directory, or ``builtin``."""

    base_model: str = Field(BUILTIN_PREFIX, min_length=1)
    builtin: BuiltinModel = Field(default_factory=BuiltinModel)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "flash_attention_3"] | None = None
    trust_remote_code: bool = False
    chat_template: str = Field(
        "model", min_length=1,
        description="model: the tokenizer's own (ChatML for the built-in model); chatml: adapt's; or a .jinja file.")
    rope_theta: float | None = Field(
        None, gt=0, description="RoPE base θ, e.g. 1e6 for long context as Code Llama's LCFT (default: the model's).")
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int | None = Field(
        None, gt=0, description="Raise the model's position limit, for a longer train.seq_len.")
    adapters: list[str] = Field(
        default_factory=list, description="Adapter directories merged into the base as it loads, in order "
                                          "(how a pipeline stacks its stages); the last one's tokenizer is used.")
    origin: Literal["builtin"] | None = Field(
        None, description="Set by pipelines: the base descends from the built-in model, whose corpus stays "
                          "the replay source and general eval set.")

    # Options added after runs were first recorded (see ``schema.LATER_OPTIONS``).
    LATER_OPTIONS: ClassVar[dict] = {"rope_theta": None, "rope_scaling": None, "max_position_embeddings": None,
                     "adapters": [], "origin": None}

    @property
    def is_builtin(self) -> bool:
        return self.base_model == BUILTIN_PREFIX

    @property
    def builtin_family(self) -> bool:
        """The built-in model, or a model adapted from it by an earlier pipeline stage."""
        return self.is_builtin or self.origin == BUILTIN_PREFIX
