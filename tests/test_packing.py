"""Document packing: the trainer's exact collated batch, run through the model as training
configures it, gives every document the logits it would get alone."""

from __future__ import annotations

import json

import torch
import yaml

from adapt.data.packing import collate, configure_model, document_positions
from adapt.data.prepare import prepare_data
from adapt.model import load_model, load_tokenizer
from adapt.recipe import load_recipe
from adapt.recipe.schema import AdapterSection, ModelSection


def short_documents_recipe(make_recipe, tmp_path, corpora):
    """Short documents (a few functions' worth each), so each block holds several of them."""
    lines = [l for p in sorted(corpora["general"].glob("*.py")) for l in p.read_text().splitlines() if l.strip()]
    docs = ["\n".join(lines[i: i + 6]) for i in range(0, 1200, 6)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    recipe = make_recipe()
    spec = yaml.safe_load(recipe.read_text())
    spec["data"] = {"sources": [{"name": "snippets", "kind": "jsonl", "paths": ["docs.jsonl"]}]}
    spec["train"].update(seq_len=256, max_steps=1)
    recipe.write_text(yaml.safe_dump(spec))
    return recipe


def batch_and_model(recipe, tiny_model_dir, mode: str):
    loaded = load_recipe(recipe, [f"data.packing={mode}"])
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), ModelSection(base_model=str(tiny_model_dir)), AdapterSection(method="full"))
    configure_model(model, mode)  # as cpt.setup does before building the Trainer
    data = prepare_data(loaded, tokenizer)
    batch = collate([data.train[i] for i in range(len(data.train))])
    return batch, model, tokenizer.eos_token_id


def segments(positions: torch.Tensor) -> list[tuple[int, int]]:
    starts = [i for i, p in enumerate(positions.tolist()) if p == 0] + [len(positions)]
    return list(zip(starts[:-1], starts[1:]))


def test_document_positions_restart_after_eos():
    assert document_positions(torch.tensor([5, 6, 2, 7, 2, 8, 9]).numpy(), eos_token_id=2).tolist() == [0, 1, 2, 0, 1, 0, 1]


def test_packed_logits_match_each_document_alone(make_recipe, tmp_path, corpora, tiny_model_dir):
    recipe = short_documents_recipe(make_recipe, tmp_path, corpora)
    batch, model, _ = batch_and_model(recipe, tiny_model_dir, "documents")
    assert "attention_mask" not in batch and model.config.use_cache is False
    model.train()  # training mode, as the Trainer runs it (dropout is 0)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        compared = 0
        for row in range(len(batch["input_ids"])):
            for start, end in segments(batch["position_ids"][row])[1:]:  # the first may continue a document
                alone = model(input_ids=batch["input_ids"][row, start:end][None]).logits[0]
                torch.testing.assert_close(packed[row, start:end], alone, atol=1e-4, rtol=1e-4)
                compared += 1
    assert compared > 20, "the blocks must hold several documents for this test to mean anything"


def test_block_packing_attends_across_documents(make_recipe, tmp_path, corpora, tiny_model_dir):
    """The control: without document packing, a later document sees the one before it."""
    recipe = short_documents_recipe(make_recipe, tmp_path, corpora)
    batch, model, eos = batch_and_model(recipe, tiny_model_dir, "blocks")
    ids = batch["input_ids"][0]
    start = int((ids == eos).nonzero()[0]) + 1
    with torch.no_grad():
        packed = model(input_ids=ids[None], attention_mask=batch["attention_mask"][:1]).logits[0, start:start + 8]
        alone = model(input_ids=ids[None, start:start + 8]).logits[0]
    assert (packed - alone).abs().max() > 1e-3
