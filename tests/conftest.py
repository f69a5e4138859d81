"""Shared fixtures: a tiny local model (hidden 64, 2 layers), small code corpora from the stdlib,
and a temporary $ADAPT_HOME so no test touches the user's cache or MLflow store."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(autouse=True)
def adapt_home(tmp_path_factory, monkeypatch):
    """Each test gets its own ADAPT_HOME, so caches and MLflow stores never leak between tests."""
    home = tmp_path_factory.mktemp("adapt_home")
    monkeypatch.setenv("ADAPT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """A 'domain' corpus (email package) and a 'general' one (json, csv, textwrap...), as plain files."""
    root = tmp_path_factory.mktemp("corpora")
    shutil.copytree(STDLIB / "email", root / "domain", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "general").mkdir()
    for name in ("json/decoder.py", "json/encoder.py", "csv.py", "textwrap.py", "shlex.py", "heapq.py",
                 "fractions.py", "statistics.py", "calendar.py", "queue.py"):
        shutil.copy(STDLIB / name, root / "general" / name.replace("/", "_"))
    return {"domain": root / "domain", "general": root / "general"}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, corpora) -> Path:
    """A random-init Llama (hidden 64, 2 layers) and a 1k BPE tokenizer, saved like a hub model."""
    import torch
    from transformers import LlamaForCausalLM

    from adapt.builtin import tiny_llama_config, train_tokenizer
    from adapt.recipe.schema import BuiltinModel

    files = sorted(corpora["domain"].rglob("*.py")) + sorted(corpora["general"].glob("*.py"))
    tokenizer = train_tokenizer(files, vocab_size=1024)
    spec = BuiltinModel(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                        vocab_size=1024, max_position_embeddings=512)
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(spec, tokenizer))
    _pretrain_briefly(model, tokenizer, sorted(corpora["general"].glob("*.py")))
    path = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def make_recipe(tmp_path, tiny_model_dir, corpora):
    """Write a recipe for the tiny model; keyword arguments replace whole sections."""

    def make(name: str = "recipe", **sections) -> Path:
        recipe = {
            "model": {"base_model": str(tiny_model_dir)},
            "adapter": {"method": "lora", "r": 8, "alpha": 16},
            "data": {
                "sources": [
                    {"name": "domain", "kind": "files", "root": str(corpora["domain"]), "include": ["**/*.py"],
                     "heldout": {"fraction": 0.1, "max_files": 3}},
                    {"name": "general", "kind": "files", "root": str(corpora["general"]), "include": ["*.py"],
                     "heldout": {"fraction": 0.2, "max_files": 2}},
                ],
                "mixture": {"domain": 0.75, "general": 0.25},
                "eval": {"domain": {"source": "domain", "max_tokens": 2048},
                         "general": {"source": "general", "max_tokens": 2048}},
            },
            "train": {"seq_len": 64, "batch_size": 8, "max_steps": 12, "lr": 3e-3, "eval_steps": 6,
                      "save_steps": 6, "logging_steps": 1, "precision": "fp32",
                      "output_dir": str(tmp_path / "runs" / name)},
            "tracking": {"enabled": False},
        }
        recipe.update(sections)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return path

    return make


def _pretrain_briefly(model, tokenizer, files, steps: int = 600) -> None:
    """A few seconds of full training on the general corpus only, so the fixture is a base model
    with general knowledge to forget and a domain (the email package) still to learn."""
    import torch

    text = "".join(f.read_text() + tokenizer.eos_token for f in files)
    ids = torch.tensor(tokenizer(text)["input_ids"])
    ids = ids[: ids.numel() // 512 * 512].view(-1, 8, 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for i in range(steps):
        batch = ids[i % len(ids)]
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
