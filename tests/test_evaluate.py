"""Evaluation: perplexity against an independent computation, forgetting verdicts, completion
accuracy on a memorised file, pass@k by hand, FIM prompts in the trained format, and the reports
that runs, `adapt eval` and `adapt compare` write."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from adapt.cli import main
from adapt.data.eval_sets import eval_specs
from adapt.data.fim import FimSpec, KNOWN, fim_prompt, fim_transform
from adapt.evaluate.execution import mean_pass_at_k
from adapt.evaluate.sets import DocumentSet, EvalDoc, load_document_sets
from adapt.recipe import load_recipe
from adapt.recipe.schema import Recipe


def _model_and_tokenizer(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_perplexity_matches_an_independent_computation(make_recipe, tiny_model_dir):
    import torch

    from adapt.evaluate.perplexity import set_losses

    model, tokenizer = _model_and_tokenizer(tiny_model_dir)
    loaded = load_recipe(make_recipe(), ["evaluation.group_by.domain=folder", "data.sources.0.heldout.max_files=8",
                                         "data.sources.0.heldout.fraction=0.3", "data.eval.domain.max_tokens=4000",
                                         "data.eval.domain.max_tokens_per_file=400"])
    domain = next(s for s in load_document_sets(loaded, tokenizer) if s.spec.name == "domain")
    assert len(domain.docs) > 1 and len({d.category for d in domain.docs}) > 1

    # Whole documents (seq_len covers them): the model's own loss, document by document.
    nll = tokens = 0.0
    with torch.no_grad():
        for doc in domain.docs:
            ids = torch.as_tensor(doc.tokens, dtype=torch.long)[None]
            nll += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
            tokens += ids.shape[1] - 1
    result = set_losses(model, domain, seq_len=512, batch_size=3)
    assert result["tokens"] == tokens
    assert result["ppl"] == pytest.approx(math.exp(nll / tokens), rel=1e-4)
    # The categories split the same tokens and losses.
    categories = result["categories"].values()
    assert sum(c["tokens"] for c in categories) == tokens
    assert sum(c["loss"] * c["tokens"] for c in categories) / tokens == pytest.approx(result["loss"], rel=1e-6)

    # Windows shorter than the documents: every token but each document's first is predicted once.
    nll = 0.0
    with torch.no_grad():
        for doc in domain.docs:
            for start in range(0, len(doc.tokens) - 1, 47):
                ids = torch.as_tensor(doc.tokens[start: start + 48], dtype=torch.long)[None]
                nll += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
    windowed = set_losses(model, domain, seq_len=48, batch_size=4)
    assert windowed["tokens"] == tokens
    assert windowed["ppl"] == pytest.approx(math.exp(nll / tokens), rel=1e-4)


def test_default_eval_sets_are_each_source_and_the_builtin_corpus():
    recipe = Recipe.model_validate({"data": {"sources": [{"name": "code", "kind": "files", "root": "."}]}})
    assert [(s.name, s.source, s.role) for s in eval_specs(recipe)] == [
        ("code", "code", "domain"), ("general", "builtin_corpus", "general")]
    hub = Recipe.model_validate({"model": {"base_model": "/some/model"},
                                 "data": {"sources": [{"name": "code", "kind": "files", "root": "."},
                                                      {"name": "replay", "kind": "files", "root": "."}]},
                                 "evaluation": {"general": ["replay"]}})
    assert [(s.name, s.role) for s in eval_specs(hub)] == [("code", "domain"), ("replay", "general")]


def test_completion_accuracy_is_one_on_a_memorised_file(tiny_model_dir):
    import torch

    from adapt.evaluate.completion import completion_accuracy
    from adapt.recipe.evaluation import CompletionEval

    model, tokenizer = _model_and_tokenizer(tiny_model_dir)
    text = "".join(f"def scale_{i}(value):\n    return value * {i} + {i * 7}\n\n" for i in range(12))
    tokens = np.array(tokenizer(text)["input_ids"] + [tokenizer.eos_token_id])
    ids = torch.as_tensor(tokens, dtype=torch.long)[None]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(400):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.05, "the fixture could not memorise the file"
    memorised = DocumentSet(eval_specs(Recipe.model_validate(
        {"data": {"sources": [{"name": "file", "kind": "files", "root": "."}]}}))[0],
        [EvalDoc("file:memorised.py", "all", text, tokens)])
    result = completion_accuracy(model.eval(), tokenizer, memorised, CompletionEval(max_samples=8, max_new_tokens=12),
                                 seq_len=512, batch_size=4)
    assert result["samples"] == 8
    assert result["token_accuracy"] == 1.0
    assert result["line_exact_match"] == 1.0 and result["edit_similarity"] == 1.0


def test_pass_at_k_by_hand():
    # pass@1 is the share correct; pass@2 of 2 samples is "any correct".
    assert mean_pass_at_k([0, 1, 2], n=2, ks=[1, 2]) == pytest.approx({"pass@1": 0.5, "pass@2": 2 / 3})
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10.
    assert mean_pass_at_k([2], n=5, ks=[1, 2, 5]) == pytest.approx({"pass@1": 0.4, "pass@2": 0.7, "pass@5": 1.0})


def test_pass_at_k_runs_samples_in_the_sandbox(monkeypatch, tiny_model_dir):
    """Two tasks, 3 samples each: task 0 gets its reference solution twice and a wrong answer
    once, task 1 only wrong answers, so pass@1 = (2/3 + 0) / 2 and pass@2 = (1 + 0) / 2."""
    import adapt.evaluate.execution as execution
    from adapt.code_tasks import builtin_tasks_path, load_tasks
    from adapt.recipe.evaluation import PassAtKEval

    rows = [json.loads(line) for line in builtin_tasks_path().read_text().splitlines()[:2]]
    tasks = load_tasks(builtin_tasks_path())[:2]
    _, tokenizer = _model_and_tokenizer(tiny_model_dir)
    answers = [rows[0]["canonical_solution"], "    return None\n", rows[0]["canonical_solution"]] + ["    pass\n"] * 3

    def fake_generate(model, tok, prompts, max_new_tokens, batch_size, desc, sample=None, num_return_sequences=1):
        assert len(prompts) == 2 and num_return_sequences == 3 and sample is not None
        return [tok(a, add_special_tokens=False)["input_ids"] for a in answers]

    monkeypatch.setattr(execution, "generate_batched", fake_generate)
    spec = PassAtKEval(samples=3, k=[1, 2], timeout_s=10, allow_weak_isolation=True)
    result = execution.evaluate_tasks(None, tokenizer, tasks, spec, batch_size=6)
    assert result["pass@1"] == pytest.approx((2 / 3) / 2)
    assert result["pass@2"] == pytest.approx(0.5)
    assert result["tasks"] == 2 and result["passed_share"] == pytest.approx(2 / 6)


@pytest.mark.parametrize("family", ["qwen", "codellama"])
def test_infill_prompts_are_the_training_format(family):
    """A FIM training sample is exactly the eval prompt for its prefix and suffix, then the middle."""
    sentinels = KNOWN[family]
    rng = random.Random(0)
    for seed in range(40):
        text = "".join(rng.choice("ab\n xy=(){}") for _ in range(rng.randint(2, 80)))
        sample, mode = fim_transform(text, f"doc{seed}", FimSpec(rate=1.0, spm_rate=0.5, seed=seed), sentinels)
        assert mode in ("psm", "spm")
        for lo in range(len(text) + 1):
            for hi in range(lo, len(text) + 1):
                built = fim_prompt(text[:lo], text[hi:], mode, sentinels) + text[lo:hi] + (sentinels.eot or "")
                if built == sample:
                    break
            else:
                continue
            break
        else:
            pytest.fail(f"no (prefix, middle, suffix) of {text!r} gives the training sample {sample!r}")


def _report(run_dir):
    return json.loads((run_dir / "eval" / "report.json").read_text())


def test_a_run_reports_before_and_after_with_the_base_cached(make_recipe, tmp_path, adapt_home):
    recipe = make_recipe("lora", evaluation={"group_by": {"domain": "folder"},
                                             "completion": {"max_samples": 6}})
    wider = ["data.sources.0.heldout.max_files=8", "data.sources.0.heldout.fraction=0.3",
             "data.eval.domain.max_tokens_per_file=400", "data.eval.domain.max_tokens=4000"]  # several folders
    assert main(["train", str(recipe), "train.max_steps=12", "train.lr=1e-2", *wider]) == 0
    run = tmp_path / "runs" / "lora"
    report = _report(run)
    domain, general = report["changes"]["domain"], report["changes"]["general"]
    assert domain["role"] == "domain" and general["role"] == "general"
    assert domain["loss_after"] < domain["loss_before"]
    assert domain["delta"] == pytest.approx(domain["loss_after"] - domain["loss_before"])
    assert report["forgetting"]["pass"] == (general["delta"] <= 0.05)
    assert len(report["after"]["sets"]["domain"]["categories"]) > 1
    assert report["after"]["sets"]["domain"]["completion"]["samples"] == 6
    assert (run / "eval" / "trace.png").stat().st_size > 10_000
    assert "forgetting:" in (run / "eval" / "report.md").read_text()
    logged = {k for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) for k in row["metrics"]}
    assert {"report/domain/delta", "report/general/loss_after", "report/forgetting_pass"} <= logged

    # Another run from the same base on the same eval data reads the base numbers from the cache.
    cached = list((adapt_home / "cache" / "eval").glob("*.json"))
    assert len(cached) == 1
    other = make_recipe("lora2", evaluation={"group_by": {"domain": "folder"}, "completion": {"max_samples": 6}})
    assert main(["train", str(other), "train.max_steps=6", "train.lr=5e-3", *wider]) == 0
    assert list((adapt_home / "cache" / "eval").glob("*.json")) == cached
    assert _report(tmp_path / "runs" / "lora2")["before"] == report["before"]


def test_an_over_trained_run_fails_the_tolerance_and_the_base_passes(make_recipe, tmp_path, tiny_model_dir, capsys):
    recipe = make_recipe("overtrained", evaluation={"completion": {"enabled": False}})
    base_out = tmp_path / "base_eval"
    assert main(["eval", str(tiny_model_dir), str(recipe), "--output", str(base_out)]) == 0
    base = json.loads((base_out / "report.json").read_text())
    assert base["forgetting"]["pass"] is True and base["changes"]["general"]["delta"] == 0.0
    assert "forgetting: PASS" in capsys.readouterr().out

    assert main(["train", str(recipe), "adapter.method=full", "train.lr=1e-2", "train.max_steps=40",
                 "data.mixture.domain=1.0", "data.mixture.general=0.0"]) == 0
    run = tmp_path / "runs" / "overtrained"
    report = _report(run)
    assert report["changes"]["general"]["delta"] > 0.05
    assert report["forgetting"]["pass"] is False
    capsys.readouterr()
    assert main(["eval", str(run), str(recipe)]) == 1, "adapt eval exits 1 when forgetting fails"
    assert "forgetting: FAIL" in capsys.readouterr().out
    assert _report(run)["changes"]["general"]["loss_after"] == pytest.approx(
        report["changes"]["general"]["loss_after"], rel=1e-5), "adapt eval measures what the run measured"

    assert main(["compare", str(base_out), str(run)]) == 0
    table = capsys.readouterr().out
    assert "PASS" in table and "FAIL" in table and "domain=1" in table


def test_a_fim_run_reports_infill_in_both_orders(make_recipe, corpora):
    sources = [{"name": "domain", "kind": "files", "root": str(corpora["domain"]), "include": ["**/*.py"],
                "heldout": {"fraction": 0.1, "max_files": 2}, "fim": {"rate": 0.9}}]
    recipe = make_recipe("fim", data={"sources": sources, "eval": {"domain": {"source": "domain", "max_tokens": 1024}}},
                         evaluation={"completion": {"enabled": False},
                                     "infill": {"max_samples": 4, "max_new_tokens": 8}})
    assert main(["train", str(recipe), "train.max_steps=4"]) == 0
    infill = _report(recipe.parent / "runs" / "fim")["after"]["sets"]["domain"]["infill"]
    assert set(infill) == {"line/psm", "line/spm", "random/psm", "random/spm"}
    assert all(v["samples"] == 4 and 0 <= v["exact_match"] <= 1 for v in infill.values())


@pytest.mark.parametrize("override, key", [
    ("evaluation.group_by.nosuch=folder", "evaluation.group_by.nosuch"),
    ("evaluation.group_by.domain=colour", "evaluation.group_by"),
    ("evaluation.general=[domian]", "evaluation.general.0"),
    ("evaluation.pass_at_k.k=[1,20]", "evaluation.pass_at_k"),
])
def test_bad_evaluation_settings_name_their_key(make_recipe, capsys, override, key):
    assert main(["validate", str(make_recipe()), override]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err


def test_missing_inputs_are_clear_errors(make_recipe, tmp_path, tiny_model_dir, capsys):
    assert main(["compare", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "no evaluation report" in err and "adapt eval" in err and "Traceback" not in err
    recipe = make_recipe(evaluation={"pass_at_k": {"tasks": "missing.jsonl"}})
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "evaluation.pass_at_k.tasks" in err and "missing.jsonl" in err and "Traceback" not in err


def test_categories_from_a_jsonl_label(make_recipe, tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    notes = tmp_path / "notes.jsonl"
    rows = [{"text": f"def note_{i}():\n    return {i}\n" * 3, "team": "radio" if i % 2 else "power"} for i in range(20)]
    notes.write_text("".join(json.dumps(row) + "\n" for row in rows))
    sources = [{"name": "notes", "kind": "jsonl", "paths": [str(notes)], "heldout": {"fraction": 0.5, "max_files": 10}}]
    loaded = load_recipe(make_recipe(data={"sources": sources, "eval": {"notes": {"source": "notes"}}},
                                     evaluation={"group_by": {"notes": "label:team"}}))
    (notes_set,) = load_document_sets(loaded, AutoTokenizer.from_pretrained(tiny_model_dir))
    assert len(notes_set.docs) == 10
    assert {doc.category for doc in notes_set.docs} == {"radio", "power"}
    by_name = {int(doc.name.rsplit(":", 1)[1]): doc.category for doc in notes_set.docs}
    assert all(category == rows[line - 1]["team"] for line, category in by_name.items())


def test_a_missing_target_is_a_clear_error(make_recipe, tmp_path, capsys):
    missing = str(tmp_path / "no-such-run")
    assert main(["eval", missing, str(make_recipe("missing"))]) == 2
    err = capsys.readouterr().err
    assert f"{missing} does not exist" in err and "fix:" in err and "Traceback" not in err
