"""Fill-in-the-middle: exact round trips, realised rates, sentinel discovery and addition, and
sentinel rows that LoRA really trains, with tied and untied embeddings."""

from __future__ import annotations

import copy
import json
import random
import sysconfig
from pathlib import Path

import pytest
import torch
from tokenizers import AddedToken, Tokenizer
from transformers import PreTrainedTokenizerFast

from adapt.data.fim import (ADDED, KNOWN, FimSentinels, FimSpec, add_sentinels, find_sentinels, fim_transform,
                            lora_trainable_token_kwargs, undo_fim)

STDLIB = Path(sysconfig.get_paths()["stdlib"])

EDGE_DOCS = ["", "a", "ab", "\n", "\n\n", "é", "日本語のテキスト", "emoji 🐍🐍 and\r\nCRLF\n",
             "a\u0301 combining", "def f(x):\n    return x + 1\n", "  leading and trailing spaces  ",
             "<", "<fim", "<|fim_"]
SENTINEL_SETS = [*KNOWN.values(), ADDED]


def _corpus(n: int) -> list[str]:
    """``n`` documents of varied length and script, built from a seeded RNG."""
    rng = random.Random(1)
    alphabet = "abc xyz\n\t{}()=:_日本🐍é\u0301<>|"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 300))) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny():
    """A small byte-level BPE tokenizer, trained like the built-in model's (about a second)."""
    from adapt.builtin import train_tokenizer

    return train_tokenizer([STDLIB / "textwrap.py", STDLIB / "shlex.py"], vocab_size=512)


def _model(tokenizer, tied: bool = True):
    """The conftest's tiny Llama (hidden 64, 2 layers) with random weights: ``tiny_model_dir``
    pretrains for minutes on a busy machine, and none of these tests needs a trained model."""
    from transformers import LlamaForCausalLM

    from adapt.builtin import tiny_llama_config
    from adapt.recipe.schema import BuiltinModel

    spec = BuiltinModel(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                        vocab_size=512, max_position_embeddings=256)
    config = tiny_llama_config(spec, tokenizer)
    config.tie_word_embeddings = tied
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("sentinels", SENTINEL_SETS, ids=lambda s: s.prefix)
@pytest.mark.parametrize("spm_rate", [0.0, 1.0])
def test_round_trip_is_exact(sentinels, spm_rate):
    spec = FimSpec(rate=1.0, spm_rate=spm_rate, seed=3)
    expected = "spm" if spm_rate else "psm"
    for i, doc in enumerate(EDGE_DOCS + _corpus(300)):
        out, mode = fim_transform(doc, f"doc{i}", spec, sentinels)
        assert mode == ("none" if len(doc) < 2 else expected)
        assert out.startswith(sentinels.prefix) == (mode != "none")
        assert undo_fim(out, sentinels) == doc, (doc, out)
    assert undo_fim("plain text", sentinels) == "plain text"


def test_psm_and_spm_layouts():
    s = FimSentinels("<P>", "<M>", "<S>")
    outs = {fim_transform("0123456789", f"k{i}", FimSpec(rate=1.0, spm_rate=0.5), s) for i in range(40)}
    for out, mode in outs:
        if mode == "psm":  # <P> prefix <S> suffix <M> middle
            prefix, rest = out[3:].split("<S>")
            suffix, middle = rest.split("<M>")
            assert prefix + middle + suffix == "0123456789"
        else:  # <P><S> suffix <M> prefix middle: prefix and middle stay contiguous
            assert out.startswith("<P><S>")
            suffix, prefix_middle = out[6:].split("<M>")
            assert prefix_middle + suffix == "0123456789" and "0123456789".startswith(prefix_middle)
    assert {mode for _, mode in outs} == {"psm", "spm"}
    eot = FimSentinels("<P>", "<M>", "<S>", eot="<E>")  # Code Llama: the middle ends with <EOT>
    out, _ = fim_transform("0123456789", "k", FimSpec(rate=1.0), eot)
    assert out.endswith("<E>") and undo_fim(out, eot) == "0123456789"


def test_documents_containing_a_sentinel_are_left_alone():
    s = KNOWN["starcoder"]
    doc = "x = '<fim_middle>'  # a tokenizer test\n"
    assert fim_transform(doc, "k", FimSpec(rate=1.0), s) == (doc, "none")


@pytest.mark.parametrize("rate,spm_rate", [(0.5, 0.5), (0.9, 0.5), (0.3, 0.2)])
def test_realised_rates_match_the_spec(rate, spm_rate):
    spec, s = FimSpec(rate=rate, spm_rate=spm_rate, seed=7), KNOWN["qwen"]
    modes = [fim_transform(doc, f"src/file{i}.py", spec, s)[1] for i, doc in enumerate(_corpus(2000))]
    transformed = [m for m in modes if m != "none"]
    assert abs(len(transformed) / len(modes) - rate) <= 0.03
    assert abs(transformed.count("spm") / len(transformed) - spm_rate) <= 0.05


def test_deterministic_per_seed_and_key():
    s, docs = KNOWN["qwen"], _corpus(200)
    run = lambda seed: [fim_transform(d, f"k{i}", FimSpec(seed=seed), s) for i, d in enumerate(docs)]  # noqa: E731
    assert run(0) == run(0)
    assert sum(a != b for a, b in zip(run(0), run(1))) > 100
    # The key, not the call order or the global RNG, decides: shuffling the calls changes nothing.
    random.seed(123)
    order = list(range(len(docs)))
    random.shuffle(order)
    shuffled = {i: fim_transform(docs[i], f"k{i}", FimSpec(seed=0), s) for i in order}
    assert [shuffled[i] for i in range(len(docs))] == run(0)


def test_spec_rejects_rates_outside_0_1():
    with pytest.raises(ValueError, match="rate"):
        FimSpec(rate=1.5)


def _with_tokens(tiny, names):
    """A copy of the tokenizer with ``names`` added as special tokens, as hub tokenizers have them."""
    tokenizer = copy.deepcopy(tiny)
    tokenizer.add_tokens([AddedToken(n, special=True, normalized=False) for n in names], special_tokens=True)
    return tokenizer


def test_find_sentinels(tiny):
    assert find_sentinels(tiny) is None
    starcoder = _with_tokens(tiny, ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"])
    assert find_sentinels(starcoder) == KNOWN["starcoder"]
    qwen = _with_tokens(tiny, ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"])  # no pad: still found
    assert find_sentinels(qwen) == FimSentinels("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", None)
    codellama = _with_tokens(tiny, ["▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"])
    assert find_sentinels(codellama) == KNOWN["codellama"]
    assert find_sentinels(_with_tokens(tiny, ["<fim_prefix>", "<fim_middle>"])) is None  # no suffix
    # Plain BPE vocab entries, not added tokens: pre-tokenization splits them, so they don't count.
    data = json.loads(tiny.backend_tokenizer.to_str())
    for name in ("<fim_prefix>", "<fim_middle>", "<fim_suffix>"):
        data["model"]["vocab"][name] = len(data["model"]["vocab"])
    unreachable = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)))
    assert "<fim_prefix>" in unreachable.get_vocab() and find_sentinels(unreachable) is None


@pytest.fixture(params=[True, False], ids=["tied", "untied"])
def with_sentinels(tiny, request):
    tokenizer, model = _with_tokens(tiny, []), _model(tiny, tied=request.param)
    before = len(tokenizer)
    sentinels, ids = add_sentinels(tokenizer, model)
    return tokenizer, model, sentinels, ids, before


def test_add_sentinels(with_sentinels):
    tokenizer, model, sentinels, ids, before = with_sentinels
    assert len(tokenizer) == before + 3 and ids == [before, before + 1, before + 2]
    assert model.get_input_embeddings().num_embeddings == before + 3
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied == model.config.tie_word_embeddings  # resizing kept the tying as it was
    for s, i in zip([sentinels.prefix, sentinels.middle, sentinels.suffix], ids):
        assert tokenizer.encode(s, add_special_tokens=False) == [i]
    for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        assert torch.allclose(weight[ids], weight[:before].mean(0).expand(3, -1))
    assert find_sentinels(tokenizer) == sentinels  # a saved, adapted tokenizer is found again
    doc = "def area(r):\n    return 3.14159 * r * r\n"
    out, mode = fim_transform(doc, "k", FimSpec(rate=1.0), sentinels)
    encoded = tokenizer.encode(out, add_special_tokens=False)
    assert mode in {"psm", "spm"} and sorted(i for i in encoded if i in ids) == sorted(ids)
    assert tokenizer.decode(encoded) == out
    with torch.no_grad():
        model.get_input_embeddings().weight[ids] += 1.0  # as if trained
    rows = model.get_input_embeddings().weight.detach().clone()
    assert add_sentinels(tokenizer, model) == (sentinels, ids)  # again: nothing added or reset
    assert len(tokenizer) == before + 3 and torch.equal(model.get_input_embeddings().weight, rows)


def test_sentinel_rows_train_under_lora(with_sentinels):
    from peft import LoraConfig, get_peft_model

    tokenizer, model, sentinels, ids, _ = with_sentinels
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                        **lora_trainable_token_kwargs(ids, model))
    peft_model = get_peft_model(model, config)
    embed, head = peft_model.get_input_embeddings(), peft_model.get_output_embeddings()
    text, _ = fim_transform("def area(r):\n    return 3.14159 * r * r\n", "k", FimSpec(rate=1.0), sentinels)
    batch = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    ordinary = next(i for i in batch[0].tolist() if i not in ids)  # in the batch, so it gets a gradient
    assert set(ids) <= set(batch[0].tolist())
    rows = ids + [ordinary]
    before_in = embed(torch.tensor(rows)).detach().clone()
    before_out = head.token_adapter.get_merged_weights(["default"])[rows].detach().clone()
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0)
    peft_model(input_ids=batch, labels=batch).loss.backward()
    optimizer.step()

    after_in = embed(torch.tensor(rows)).detach()
    after_out = head.token_adapter.get_merged_weights(["default"])[rows].detach()
    for before, after in ((before_in, after_in), (before_out, after_out)):
        assert (after[:3] - before[:3]).abs().amax(dim=1).min() > 1e-4  # each sentinel row moved
        assert torch.equal(after[3], before[3])  # an ordinary row did not
    # Tied: one delta serves both sides. Untied: both layers got their own trainable rows.
    assert torch.equal(after_in, after_out) == model.config.tie_word_embeddings
