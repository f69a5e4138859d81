"""Masked-diffusion adaptation: the noise follows t, CoDA's strategies keep their invariants, the
loss is the 1/t-weighted formula, attention becomes bidirectional, the sampler fills every mask
in its steps, and CPT and SFT runs train with it end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from adapt.cli import main
from adapt.diffusion.masking import DiffusionCollator, block_mask
from adapt.recipe.diffusion import DiffusionSection
from test_sft import arithmetic_chats, series, sft_recipe  # noqa: F401 (a fixture)

MASK, PAD = 99, 0


def noised(spec: DiffusionSection, rows: int, width: int, t: float | None = None, labels=None, seed: int = 0,
           probabilities=None) -> tuple[dict, dict]:
    ids = torch.randint(1, 90, (rows, width), generator=torch.Generator().manual_seed(seed + 1))
    batch = {"input_ids": ids, "labels": ids.clone() if labels is None else labels}
    collator = DiffusionCollator(spec, MASK, PAD, seed=seed)
    off = {"prefix": 0.0, "suffix": 0.0, "block": 0.0}
    out = collator.noise(batch, [torch.Generator().manual_seed(seed)] * rows, probabilities or off,
                         None if t is None else torch.full((rows,), t))
    return batch, out


def test_mask_rate_follows_t():
    spec = DiffusionSection()
    for t in (0.1, 0.5, 0.9):
        _, out = noised(spec, rows=4, width=4000, t=t)
        rate = (out["input_ids"][:, 1:] == MASK).float().mean().item()
        assert abs(rate - t) < 0.02, (t, rate)
        assert ((out["input_ids"] == MASK) == (out["labels"] != -100)).all()
    _, out = noised(spec, rows=2000, width=64)  # t drawn per row from U(t_min, 1]
    rates = (out["input_ids"][:, 1:] == MASK).float().mean(dim=1)
    assert abs(rates.mean().item() - 0.5) < 0.03 and float(out["diffusion_t"].min()) >= spec.t_min
    assert torch.corrcoef(torch.stack([rates, out["diffusion_t"]]))[0, 1] > 0.95


def test_position_zero_padding_and_prompts_are_never_masked():
    labels = torch.randint(1, 90, (8, 32))
    labels[:, :10] = -100  # an SFT prompt
    labels[:, 28:] = -100  # padding
    _, out = noised(DiffusionSection(), rows=8, width=32, t=1.0, labels=labels)
    masked = out["input_ids"] == MASK
    assert not masked[:, :10].any() and not masked[:, 28:].any() and masked[:, 10:28].all()
    assert (out["diffusion_tokens"] == 18).all()
    _, out = noised(DiffusionSection(), rows=8, width=32, t=1.0, labels=labels,
                    probabilities={"prefix": 0, "suffix": 1.0, "block": 0})
    assert (out["diffusion_tokens"] == (out["input_ids"] == MASK).sum(dim=1)).all(), "S2's padding is not counted"


def test_prefix_strategy_leaves_an_unmasked_prefix():
    _, out = noised(DiffusionSection(), rows=64, width=40, t=1.0, probabilities={"prefix": 1.0, "suffix": 0, "block": 0})
    masked = out["input_ids"] == MASK
    for row in masked:
        k = int(row.float().argmax())  # t = 1: everything after the prefix is masked
        assert k >= 1 and not row[:k].any() and row[k:].all()
    assert len({int(r.float().argmax()) for r in masked}) > 5, "prefix lengths vary"


def test_suffix_strategy_pads_an_unmaskable_tail():
    batch, out = noised(DiffusionSection(), rows=64, width=40, t=1.0,
                        probabilities={"prefix": 0, "suffix": 1.0, "block": 0})
    for row, labels in zip(out["input_ids"], out["labels"]):
        cut = int((row == PAD).float().argmax())
        assert cut >= 1 and (row[cut:] == PAD).all() and (labels[cut:] == -100).all()
        assert (row[1:cut] == MASK).all()
    assert len({int((row == PAD).float().argmax()) for row in out["input_ids"]}) > 5, "cuts vary"
    assert (out["attention_mask"] == 1).all(), "the padding is seen, as a visible end"


def test_block_strategy_masks_spans_at_the_same_rate():
    spec = DiffusionSection(block_lengths=[2, 4, 8])
    for t in (0.2, 0.5, 0.8):
        batch, out = noised(spec, rows=16, width=200, t=t, probabilities={"prefix": 0, "suffix": 0, "block": 1.0})
        masked = out["input_ids"] == MASK
        assert (masked.sum(dim=1) == round(t * 199)).all()
        for row in masked:
            edges = torch.diff(torch.cat([torch.tensor([0]), row.int(), torch.tensor([0])]))
            starts, ends = torch.nonzero(edges == 1).flatten(), torch.nonzero(edges == -1).flatten()
            assert int(((ends - starts) == 1).sum()) <= 2, "spans, not scattered tokens"
    allowed = torch.zeros(50, dtype=torch.bool)
    allowed[10:30] = True
    masked = block_mask(allowed, 0.5, [4], torch.Generator().manual_seed(0))
    assert int(masked.sum()) == 10 and not (masked & ~allowed).any()


def test_strategy_probabilities_rise_per_epoch():
    spec = DiffusionSection(prefix=[0.01, 0.2], suffix=[0.01, 0.2], block=[0.05, 0.25], ramp_epochs=2)
    collator = DiffusionCollator(spec, MASK, PAD)
    assert collator.probabilities() == pytest.approx({"prefix": 0.01, "suffix": 0.01, "block": 0.05})
    collator.epoch = 1.5
    assert collator.probabilities() == pytest.approx({"prefix": 0.105, "suffix": 0.105, "block": 0.15})
    collator.epoch = 7.0
    assert collator.probabilities() == pytest.approx({"prefix": 0.2, "suffix": 0.2, "block": 0.25})

    from adapt.diffusion.loss import EpochCallback

    class State:
        global_step = 30

    EpochCallback(collator, steps_per_pass=10).on_step_begin(None, State(), None)
    assert collator.epoch == 3.0, "epochs are passes over the data, counted in steps"


def test_loss_matches_the_formula_on_a_hand_built_batch():
    from adapt.diffusion.loss import diffusion_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.full((2, 5), -100)
    labels[0, 2], labels[0, 4], labels[1, 1] = 3, 6, 0
    t, tokens = torch.tensor([0.5, 0.25]), torch.tensor([4, 3])
    log_p = F.log_softmax(logits, dim=-1)
    expected = (-(log_p[0, 1, 3] + log_p[0, 3, 6]) / 0.5 - log_p[1, 0, 0] / 0.25) / 7
    assert diffusion_loss(logits, labels, t, tokens).item() == pytest.approx(expected.item(), rel=1e-6)


def test_attention_becomes_bidirectional():
    from transformers import LlamaConfig, LlamaForCausalLM

    from adapt.diffusion.attention import make_bidirectional

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (1, 12))
    later = ids.clone()
    later[0, 10] = (ids[0, 10] + 1) % 64
    for implementation in ("sdpa", "eager"):
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            assert torch.equal(model(ids).logits[0, :10], model(later).logits[0, :10]), "causal: earlier unchanged"
    make_bidirectional(model)
    for implementation in ("sdpa", "eager"):
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            changed = (model(ids).logits[0, :10] - model(later).logits[0, :10]).abs().amax(dim=-1)
        assert (changed > 1e-4).all(), implementation


def test_sampler_fills_every_mask_in_its_steps():
    from transformers import LlamaConfig, LlamaForCausalLM

    from adapt.diffusion.attention import make_bidirectional
    from adapt.diffusion.sample import unmask

    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    make_bidirectional(model)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    ids = torch.randint(0, 90, (3, 30))
    ids[:, 5:25] = MASK
    ids[2, 5:8] = 7  # rows with different numbers of masks
    filled = unmask(model, ids, MASK, steps=6)
    assert not (filled == MASK).any() and len(calls) == 6
    assert torch.equal(filled[ids != MASK], ids[ids != MASK]), "only masks change"
    with pytest.raises(ValueError, match="position 0"):
        unmask(model, torch.full((1, 4), MASK), MASK, steps=2)


def test_diffusion_cpt_lowers_masked_loss_and_reports_infill(make_recipe, tmp_path, monkeypatch):
    recipe = make_recipe("diffusion", evaluation={"completion": {"enabled": False},
                                                  "infill": {"max_samples": 4, "spans": ["line"]}})
    args = ["train.objective=diffusion", "train.max_steps=40", "train.eval_steps=20", "train.save_steps=20",
            "diffusion.sample_steps=4", "adapter.method=full", "data.eval.domain.max_tokens=1024",
            "data.eval.general.max_tokens=1024"]
    assert main(["train", str(recipe), *args]) == 0
    run = tmp_path / "runs" / "diffusion"
    domain = series(run, "eval/domain/loss")
    assert set(domain) == {0, 20, 40} and domain[40] < 0.95 * domain[0], domain
    report = json.loads((run / "eval" / "report.json").read_text())
    entry = report["after"]["sets"]["domain"]
    assert entry["infill"]["line/diffusion"]["samples"] == 4 and "completion" not in entry
    assert report["changes"]["domain"]["loss_after"] < report["changes"]["domain"]["loss_before"]
    assert json.loads((run / "final" / "config.json").read_text())["is_causal"] is False
    import adapt.diffusion.sample as sample

    calls = []
    real_unmask = sample.unmask

    def spy(model, ids, mask_id, steps, attention_mask=None):
        calls.append(((ids == mask_id).sum().item(), steps))
        return real_unmask(model, ids, mask_id, steps, attention_mask)

    monkeypatch.setattr(sample, "unmask", spy)
    assert main(["generate", str(run), "--prompt", "def ", "--max-new-tokens", "8"]) == 0
    assert calls == [(8, 2)], "a diffusion run completes a prompt by unmasking 8 masks in 2 steps"
    assert main(["eval", str(run), str(recipe), *args, "--output", str(tmp_path / "eval")]) in (0, 1)
    again = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert again["after"]["sets"]["domain"]["loss"] == pytest.approx(entry["loss"], rel=1e-4), \
        "a reloaded diffusion model is measured with full attention again"


def test_diffusion_sft_masks_only_the_response(sft_recipe):
    from adapt.diffusion.training import diffusion_setup as setup
    from adapt.recipe import load_recipe

    recipe = sft_recipe("dsft", rows=arithmetic_chats(60))
    loaded = load_recipe(recipe, ["train.objective=diffusion", "sft.packing=false"])
    built = setup(loaded)
    trainer = built.make_trainer({"output_dir": str(recipe.parent / "out"), "use_cpu": True, "report_to": "none"}, [])
    rows = [trainer.train_dataset[i] for i in range(16)]
    batch = trainer.data_collator([dict(row) for row in rows])
    mask_id = built.tokenizer.convert_tokens_to_ids("<|mask|>")
    masked = batch["input_ids"] == mask_id
    prompts = 0
    for row, is_masked in zip(rows, masked):
        unlabelled = torch.tensor(row["labels"]) == -100
        assert not is_masked[: len(unlabelled)][unlabelled].any(), "prompts are an unmaskable prefix"
        prompts += bool(unlabelled.any())
    assert prompts and masked.any()
    assert main(["train", str(recipe), "train.objective=diffusion", "sft.packing=false", "evaluation.enabled=false"]) == 0
    chat = series(recipe.parent / "runs" / "dsft", "eval/chat/loss")
    assert chat[max(chat)] < chat[0], chat


@pytest.mark.parametrize("override, key", [
    (["kind=dpo"], "train.objective"),
    (["data.sources.0.fim.rate=0.5"], "data.sources.0.fim"),
    (["diffusion.block=[0.5]"], "diffusion.block"),
])
def test_bad_diffusion_settings_name_the_key(make_recipe, capsys, override, key):
    recipe = make_recipe("bad")
    assert main(["validate", str(recipe), "train.objective=diffusion", *override]) != 0
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
