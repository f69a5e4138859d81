"""Fill-in-the-middle (FIM) at the text level, applied to whole documents before tokenization.

Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the Middle"
(arXiv 2207.14255): cut a document at two character positions into prefix, middle and suffix,
and move the middle to the end behind sentinel tokens, so a left-to-right model learns to infill.
A share ``rate`` of documents is transformed (Code Llama: 0.9; Granite's alpha=0.5 mixed loss is
0.5); of those a share ``spm_rate`` uses SPM order instead of PSM (Code Llama: 0.5).

    PSM: <PRE> prefix <SUF> suffix <MID> middle [<EOT>]
    SPM: <PRE> <SUF> suffix <MID> prefix middle [<EOT>]

The SPM variant is the one of Bavarian et al. App. D, which Code Llama (Rozière et al. 2023,
sec. 2.3) and StarCoder (bigcode Megatron-LM's ``permute``) trained with, so a base model that
already infills sees its own format. Prefix and middle stay contiguous, so
the middle is a plain continuation of the prefix. ``<EOT>`` is written only for Code Llama,
whose infills end with it; elsewhere the document's EOS (added by tokenization) ends the middle.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class FimSpec:
    """``rate``: share of documents transformed; ``spm_rate``: share of those in SPM, not PSM."""

    rate: float = 0.5
    spm_rate: float = 0.5
    seed: int = 0

    def __post_init__(self):
        for name in ("rate", "spm_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FIM {name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class FimSentinels:
    """The sentinel strings, spelled as the tokenizer has them (each is one token)."""

    prefix: str
    middle: str
    suffix: str
    pad: str | None = None  # only context-level FIM pads; documents here never contain it
    eot: str | None = None  # ends the middle where EOS does not (Code Llama's ``▁<EOT>``)

    def strings(self) -> list[str]:
        return [s for f in fields(self) if (s := getattr(self, f.name)) is not None]


# Known families, first match wins. Qwen2.5-Coder's spelling is also what ``add_sentinels`` adds:
# llama.cpp maps ``<|fim_prefix|>`` & co. to its FIM tokens when it loads a GGUF, so an exported
# model infills there without extra metadata.
KNOWN = {
    "qwen": FimSentinels("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"),
    "starcoder": FimSentinels("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"),
    "codellama": FimSentinels("▁<PRE>", "▁<MID>", "▁<SUF>", eot="▁<EOT>"),
}
ADDED = FimSentinels(KNOWN["qwen"].prefix, KNOWN["qwen"].middle, KNOWN["qwen"].suffix)


def _is_one_token(tokenizer, vocab: dict[str, int], text: str) -> bool:
    """Whether ``text`` is one vocab entry that stays one token inside a document.

    Being in the vocab is not enough: a BPE entry that is not an added token is split by
    pre-tokenization, so we encode it between ordinary characters and look for its id.
    """
    token_id = vocab.get(text)
    return token_id is not None and tokenizer.encode(f"x{text}\n", add_special_tokens=False).count(token_id) == 1


def find_sentinels(tokenizer) -> FimSentinels | None:
    """The FIM sentinels the tokenizer already has (Qwen, StarCoder or Code Llama names), or None."""
    vocab = tokenizer.get_vocab()
    for family in KNOWN.values():
        if all(_is_one_token(tokenizer, vocab, s) for s in (family.prefix, family.middle, family.suffix)):
            optional = {k: s if s and _is_one_token(tokenizer, vocab, s) else None
                        for k, s in (("pad", family.pad), ("eot", family.eot))}
            return FimSentinels(family.prefix, family.middle, family.suffix, **optional)
    return None


def add_sentinels(tokenizer, model=None) -> tuple[FimSentinels, list[int]]:
    """Add prefix/middle/suffix as special tokens, grow the embeddings, return their ids.

    No pad token: document-level FIM never pads, and a row no sample contains would stay untrained.
    New rows (input and, if untied, output) are set to the mean of the existing token rows
    (Hewitt 2021, "Initializing New Word Embeddings for Pretrained Language Models"): a new
    token's logit is then close to the average logit, so adding it barely changes the model's
    distribution, where a random row can take a large share of the softmax before any training.
    The three rows start equal and separate with their first gradients (they sit in different
    places in every sample). Returns ids so the trainer can make exactly these rows trainable.
    Idempotent: names the tokenizer already has keep their rows.
    """
    from adapt.model import add_special_tokens

    ids = add_special_tokens(tokenizer, model, [ADDED.prefix, ADDED.middle, ADDED.suffix])
    return ADDED, ids


def fim_transform(text: str, doc_key: str, spec: FimSpec, sentinels: FimSentinels) -> tuple[str, str]:
    """``(new_text, mode)`` with mode ``"none"``, ``"psm"`` or ``"spm"``.

    ``text`` must be one whole document (the caller guarantees it): a FIM sample cut from a
    packed window would teach the model to infill across document boundaries (Code Llama, too,
    applies FIM only to documents that are not cut across model contexts).

    The choice is a function of ``(spec, doc_key, text)`` alone, through an RNG seeded by a hash
    of ``(spec.seed, doc_key)``, never global state: every process and rank transforms a document
    the same way, and the tokenized result can be cached by content. The two cut points are
    uniform over character (code point) positions, as in Bavarian et al., so empty parts are
    allowed. Documents under 2 characters, and documents that already contain a sentinel
    string (they could not be told apart from the format), are returned unchanged.
    """
    key = hashlib.blake2b(f"{spec.seed}\0{doc_key}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(key, "big"))
    transform, spm = rng.random() < spec.rate, rng.random() < spec.spm_rate
    if not transform or len(text) < 2 or any(s in text for s in sentinels.strings()):
        return text, "none"
    lo, hi = sorted((rng.randint(0, len(text)), rng.randint(0, len(text))))
    mode = "spm" if spm else "psm"
    return fim_prompt(text[:lo], text[hi:], mode, sentinels) + text[lo:hi] + (sentinels.eot or ""), mode


def fim_prompt(prefix: str, suffix: str, mode: str, sentinels: FimSentinels) -> str:
    """Everything of a FIM sample before the middle: what an infilling model is prompted with.
    Training samples are this plus the middle (and ``eot``), so evaluation asks in the same format."""
    s = sentinels
    if mode == "spm":
        return f"{s.prefix}{s.suffix}{suffix}{s.middle}{prefix}"
    return f"{s.prefix}{prefix}{s.suffix}{suffix}{s.middle}"


def undo_fim(text: str, sentinels: FimSentinels) -> str:
    """The original document of a FIM sample; text that is not one comes back unchanged."""
    s = sentinels
    if s.eot:
        if not text.endswith(s.eot):
            return text
        body = text[: -len(s.eot)]
    else:
        body = text
    if not body.startswith(s.prefix):
        return text
    body = body[len(s.prefix):]
    # PSM: head is the prefix, after <MID> the middle. SPM: head is empty, after <MID> comes
    # prefix + middle. Either way the document is head + after-<MID> + suffix.
    head, sep, tail = body.partition(s.suffix)
    suffix, sep2, middle = tail.partition(s.middle)
    return head + middle + suffix if sep and sep2 else text


def lora_trainable_token_kwargs(new_ids: list[int], model=None) -> dict:
    """``LoraConfig`` kwargs that train exactly the ``new_ids`` rows of the embeddings.

    peft's ``trainable_token_indices`` trains only those rows, as a small delta saved with the
    adapter. Given a list, peft wraps the input embedding and, when the config
    says ``tie_word_embeddings``, ties the LM head to the same delta, so both sides change. For
    an untied model (pass ``model``) we name both layers, so the output rows are trained too.
    """
    ids = sorted(set(int(i) for i in new_ids))
    if model is None:
        return {"trainable_token_indices": ids}
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if outputs is None or outputs.weight is inputs.weight:
        return {"trainable_token_indices": ids}
    names = {module: name for name, module in model.named_modules()}
    return {"trainable_token_indices": {names[inputs]: ids, names[outputs]: ids}}
