"""SFT on the tiny model: loss goes down, prompt tokens carry no loss, the three row formats and
rehearsal load, and bad rows or templates are clear errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from adapt.cli import main
from adapt.train.metrics import read_metrics


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def arithmetic_chats(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        rows.append({"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                                  {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]})
    return rows


@pytest.fixture
def sft_recipe(make_recipe, tmp_path, corpora, tiny_model_dir):
    def make(name: str, rows: list[dict] | None = None, source: dict | None = None, **sections) -> Path:
        data_file = write_jsonl(tmp_path / f"{name}.jsonl", rows if rows is not None else arithmetic_chats(120))
        chat = {"name": "chat", "kind": "instructions", "path": str(data_file), "heldout": {"fraction": 0.1},
                **(source or {})}
        general = {"name": "general", "kind": "files", "root": str(corpora["general"]), "include": ["*.py"],
                   "heldout": {"fraction": 0.2, "max_files": 2}}
        data = {"sources": [chat, general], "mixture": {"chat": 0.8, "general": 0.2},
                "eval": {"chat": {"source": "chat"}, "general": {"source": "general", "max_tokens": 1024}}}
        train = {"seq_len": 128, "batch_size": 4, "max_steps": 16, "lr": 1e-2, "eval_steps": 8, "save_steps": 8,
                 "logging_steps": 1, "precision": "fp32", "output_dir": str(tmp_path / "runs" / name)}
        sections.setdefault("model", {"base_model": str(tiny_model_dir), "chat_template": "chatml"})
        return make_recipe(name, kind="sft", data=sections.pop("data", data), train=train, **sections)

    return make


def series(run_dir: Path, name: str) -> dict[int, float]:
    return {row["step"]: row["metrics"][name] for row in read_metrics(run_dir / "metrics.jsonl")
            if name in row["metrics"]}


def test_sft_lowers_loss_with_rehearsal(sft_recipe):
    recipe = sft_recipe("sft")
    assert main(["train", str(recipe)]) == 0
    run = recipe.parent / "runs" / "sft"
    chat = series(run, "eval/chat/loss")
    assert set(chat) == {0, 8, 16} and chat[16] < 0.8 * chat[0], chat
    assert set(series(run, "eval/general/loss")) == {0, 8, 16}
    report = json.loads((run / "data_report.json").read_text())
    assert report["mixture"]["general"]["realised"] == pytest.approx(0.2, abs=0.02), report["mixture"]
    assert 0 < report["packing"]["efficiency"] <= 1
    assert (run / "final" / "adapter_config.json").is_file()
    template = json.loads((run / "final" / "tokenizer_config.json").read_text()).get("chat_template") or \
        (run / "final" / "chat_template.jinja").read_text()
    assert "{% generation %}" in template, "the ChatML template is saved with the model"
    assert main(["generate", str(run), "--chat", "--prompt", "What is 1 plus 2?", "--max-new-tokens", "12",
                 "--temperature", "0"]) == 0


def test_prompt_tokens_are_masked_in_the_trainers_batch(sft_recipe):
    from adapt.recipe import load_recipe
    from adapt.train.arguments import training_kwargs
    from adapt.train.sft import setup

    loaded = load_recipe(sft_recipe("masks", rows=arithmetic_chats(40)), ["sft.packing=false"])
    stage = setup(loaded)
    args = training_kwargs(loaded.recipe.train, str(loaded.path.parent / "ckpt"), 1, False, False)
    trainer = stage.make_trainer(args, [])
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = stage.tokenizer
    checked = 0
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        text = tokenizer.decode(ids)
        if "<|im_start|>user" not in text:
            continue  # a rehearsal piece: every token is trained
        trained = tokenizer.decode([i for i, label in zip(ids, labels) if label != -100])
        prompt = tokenizer.decode([i for i, label in zip(ids, labels) if label == -100 and i != tokenizer.pad_token_id])
        assert "What is" in prompt and "What is" not in trained, (prompt, trained)
        assert " plus " in trained and trained.endswith("<|im_end|>"), trained
        checked += 1
    assert checked, "the batch held at least one chat row"


def test_alpaca_and_prompt_completion_rows_with_a_column_mapping(sft_recipe):
    from adapt.data.rows import read_rows
    from adapt.recipe import load_recipe

    alpaca = [{"question": f"Add {i} and 1", "context": "integers", "answer": str(i + 1)} for i in range(10)]
    loaded = load_recipe(sft_recipe("alpaca", rows=alpaca, source={
        "format": "alpaca", "columns": {"instruction": "question", "input": "context", "output": "answer"},
        "system": "Be brief."}))
    rows = read_rows(loaded, 0)
    assert rows.format == "alpaca"
    assert rows.train[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert rows.train[0]["messages"][1]["content"].endswith("\n\nintegers")

    pairs = [{"prompt": f"def f{i}():\n", "completion": f"    return {i}\n"} for i in range(10)]
    loaded = load_recipe(sft_recipe("pc", rows=pairs))
    assert read_rows(loaded, 0).format == "prompt_completion"


def test_prompt_completion_masks_the_prompt():
    from transformers import AutoTokenizer

    from adapt.data.chat import tokenize_example

    class Tok:  # a whitespace tokenizer is enough to check where the mask starts
        eos_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [len(w) for w in text.split(" ")]}

    ids, mask = tokenize_example({"prompt": "a bb ccc", "completion": " dddd eeeee"}, Tok(), assistant_only=True)
    assert ids == [1, 2, 3, 4, 5, 0] and mask == [0, 0, 0, 1, 1, 1]
    assert AutoTokenizer  # the real tokenizer path is covered by the trainer test above


@pytest.mark.parametrize("rows,message", [
    ([{"text": "hello"}], "cannot tell the format"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "no assistant message"),
    ([{"messages": [{"role": "robot", "content": "hi"}]}], "messages[0]"),
])
def test_bad_rows_are_clear_errors(sft_recipe, capsys, rows, message):
    recipe = sft_recipe("bad", rows=rows * 4)
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "fix:" in err


def test_missing_mapped_column_names_the_key(sft_recipe, capsys):
    recipe = sft_recipe("nocol", rows=[{"q": "a", "a": "b"}] * 4, source={"format": "alpaca"})
    assert main(["validate", str(recipe)]) == 0  # rows are read by the data stage, not by validate
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "data.sources.0.columns" in err and "'instruction'" in err and "columns: q, a" in err


@pytest.mark.parametrize("template,expected", [
    ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
     ("{% generation %} markers", "chatml", "prompt/completion")),  # renders, but marks no assistant tokens
    ("{% for m in messages %}{{ m['content'] }}", ("does not render",)),
])
def test_unusable_chat_template_names_the_key(sft_recipe, tiny_model_dir, tmp_path, capsys, template, expected):
    path = tmp_path / "template.jinja"
    path.write_text(template)
    recipe = sft_recipe("template", model={"base_model": str(tiny_model_dir), "chat_template": str(path)})
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "model.chat_template" in err and all(e in err for e in expected) and "Traceback" not in err, err


def test_packed_rows_do_not_attend_across_examples(tiny_model_dir):
    """Each example's logits in a packed, collated row equal its logits alone; padding and each
    example's first token are not targets."""
    import torch
    from transformers import AutoModelForCausalLM

    from adapt.data.sft import _dataset
    from adapt.train.sft import PackedRowsCollator

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model.config.use_cache = False
    first, second = list(range(5, 25)), list(range(40, 52))
    packed = _dataset([(first, [0] * 5 + [1] * 15), (second, [1] * 12)], seq_len=40, packing=True)
    assert len(packed) == 1 and sorted(packed[0]["seq_lengths"]) == [12, 20]
    batch = PackedRowsCollator(pad_token_id=0, return_position_ids=True)([packed[0], {"input_ids": [7, 8],
                                                                                       "labels": [7, 8], "seq_lengths": [2]}])
    assert "attention_mask" not in batch and batch["input_ids"].shape == (2, 32)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        for example in (first, second):
            start = batch["input_ids"][0].tolist().index(example[0])
            alone = model(input_ids=torch.tensor([example])).logits[0]
            torch.testing.assert_close(logits[start: start + len(example)], alone, atol=1e-5, rtol=1e-4)
            assert batch["labels"][0, start] == -100, "an example's first token is not predicted across the boundary"
    assert (batch["labels"][1, 2:] == -100).all(), "padding is not a target"


def test_a_fixed_recipe_reruns_in_the_same_directory(sft_recipe, tmp_path, capsys):
    """A run that stopped on bad data, before training, starts again once the data is fixed."""
    recipe = sft_recipe("fixme", rows=[{"text": "no format"}] * 4)
    assert main(["train", str(recipe), "train.max_steps=2"]) == 2
    write_jsonl(tmp_path / "fixme.jsonl", arithmetic_chats(20))
    assert main(["train", str(recipe), "train.max_steps=2", "data.sources.0.format=messages"]) == 0, \
        capsys.readouterr().err


def test_missing_or_corrupt_row_files_name_the_file(sft_recipe, tmp_path, capsys):
    recipe = sft_recipe("corrupt")
    assert main(["validate", str(recipe), "data.sources.0.path=nowhere.jsonl"]) == 2
    assert "data.sources.0.path" in capsys.readouterr().err
    with open(tmp_path / "corrupt.jsonl", "a") as f:
        f.write("{not json\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "corrupt.jsonl:121: line is not JSON" in err and "Traceback" not in err
