"""Data stage: held-out split by whole file, token cache, packing without dropping tokens,
and token-level mixtures that hit their targets."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from adapt.data.mixture import MixtureError, allocate, plan_mixture
from adapt.data.packing import PAD, BlockDataset, pack
from adapt.recipe import load_recipe


def test_pack_keeps_every_token_and_masks_only_padding():
    tokens = np.arange(1, 151, dtype=np.uint32)
    blocks = pack(tokens, 64)
    assert blocks.shape == (3, 64)
    real = blocks[blocks != PAD]
    assert np.array_equal(real, tokens)
    item = BlockDataset(blocks, pad_token_id=0)[2]
    assert int(item["attention_mask"].sum()) == 150 - 128
    assert (item["labels"][22:] == -100).all() and (item["labels"][:22] > 0).all()


def test_allocate_is_exact_and_proportional():
    counts = allocate({"a": 0.75, "b": 0.25, "c": 0.0}, 1001)
    assert sum(counts.values()) == 1001 and "c" not in counts
    assert abs(counts["a"] / 1001 - 0.75) < 1e-3


def test_mixture_repeats_up_to_max_repetition_then_refuses():
    plan = plan_mixture({"a": 10, "b": 100}, {"a": 0.5, "b": 0.5}, 40, max_repetition=2, seed=0)
    assert plan.counts == {"a": 20, "b": 20} and plan.repetition["a"] == 2
    assert sorted(i for s, i in plan.order if s == "a") == sorted(list(range(10)) * 2)
    with pytest.raises(MixtureError, match="'a' needs 21 blocks"):
        plan_mixture({"a": 10, "b": 100}, {"a": 0.5, "b": 0.5}, 42, max_repetition=2, seed=0)


def test_prepared_data_hits_ratios_and_reuses_the_token_cache(make_recipe, tiny_model_dir, adapt_home):
    from adapt.data.prepare import prepare_data
    from adapt.model import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    loaded = load_recipe(make_recipe(), ["train.max_steps=50"])
    data = prepare_data(loaded, tokenizer)
    assert len(data.train) == 50 * loaded.recipe.train.batch_size
    for name, target in {"domain": 0.75, "general": 0.25}.items():
        assert abs(data.report["mixture"][name]["realised"] - target) < 0.01
    assert data.report["eval"]["domain"]["tokens"] <= 2048
    cached = sorted((adapt_home / "cache" / "tokens").glob("*.npz"))
    assert len(cached) == 4  # train and held-out, for each source

    # A new ratio re-uses the tokens: no new cache entries.
    loaded = load_recipe(make_recipe(), ["train.max_steps=50", "data.mixture={domain: 0.5, general: 0.5}"])
    data = prepare_data(loaded, tokenizer)
    assert sorted((adapt_home / "cache" / "tokens").glob("*.npz")) == cached
    assert abs(data.report["mixture"]["domain"]["realised"] - 0.5) < 0.01


def test_heldout_split_is_by_whole_file_and_fixed(make_recipe):
    from adapt.data.sources import resolve_sources

    first = resolve_sources(load_recipe(make_recipe()))["domain"]
    again = resolve_sources(load_recipe(make_recipe()))["domain"]
    assert first.heldout == again.heldout and len(first.heldout) == 3
    assert not set(first.heldout) & set(first.train)


def test_jsonl_line_that_is_not_json_names_file_and_line(make_recipe, tmp_path, capsys):
    from adapt.cli import main

    data = tmp_path / "docs.jsonl"
    data.write_text('{"text": "def f(): pass"}\n{"text": "x = 1"}\nnot json\n')
    recipe = make_recipe()
    spec = yaml.safe_load(recipe.read_text())
    spec["data"]["sources"].append({"name": "notes", "kind": "jsonl", "paths": [str(data)]})
    recipe.write_text(yaml.safe_dump(spec))
    assert main(["validate", str(recipe)]) == 2
    assert f"{data}:3:" in capsys.readouterr().err


def test_mixture_from_a_file(make_recipe, tmp_path, capsys):
    from adapt.cli import main

    (tmp_path / "mix.yaml").write_text("mixture: {domain: 0.9, general: 0.1}\n")
    loaded = load_recipe(make_recipe(), ["data.mixture=mix.yaml"])
    assert loaded.recipe.data.mixture == {"domain": 0.9, "general": 0.1}
    (tmp_path / "bad.yaml").write_text("mixture: {domain: 0.9, general: 0.1}\nweights: 1\n")
    assert main(["validate", str(make_recipe()), "data.mixture=bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.yaml'}:2: weights: unknown key" in err


def dataset_recipe(make_recipe, source: dict):
    recipe = make_recipe()
    spec = yaml.safe_load(recipe.read_text())
    spec["data"] = {"sources": [{"name": "rows", "kind": "dataset", **source}], "eval": {"rows": {"source": "rows"}}}
    recipe.write_text(yaml.safe_dump(spec))
    return recipe


def test_dataset_sources_parquet_and_save_to_disk(make_recipe, tmp_path, corpora, tiny_model_dir):
    import datasets

    from adapt.data.prepare import prepare_data
    from adapt.model import load_tokenizer

    texts = [p.read_text() for p in sorted(corpora["domain"].rglob("*.py")) if p.stat().st_size > 100]
    table = datasets.Dataset.from_dict({"content": texts, "id": list(range(len(texts)))})
    table.to_parquet(str(tmp_path / "code.parquet"))
    table.save_to_disk(str(tmp_path / "saved"))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    for source in ({"path": "code.parquet"}, {"path": "saved"}):
        loaded = load_recipe(dataset_recipe(make_recipe, {**source, "text_field": "content"}))
        data = prepare_data(loaded, tokenizer)
        assert data.report["sources"]["rows"]["train_documents"] + data.report["sources"]["rows"]["heldout_documents"] == len(texts)
        assert data.report["eval"]["rows"]["tokens"] > 0


def test_dataset_source_errors_name_the_key(make_recipe, tmp_path, capsys):
    from adapt.cli import main

    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    assert main(["validate", str(dataset_recipe(make_recipe, {"path": "broken.parquet"}))]) == 2
    err = capsys.readouterr().err
    assert "data.sources.0.path" in err and "cannot read dataset" in err and "Traceback" not in err

    import datasets

    datasets.Dataset.from_dict({"body": ["x = 1"] * 4}).to_parquet(str(tmp_path / "other.parquet"))
    assert main(["validate", str(dataset_recipe(make_recipe, {"path": "other.parquet"}))]) == 2
    assert "data.sources.0.text_field" in capsys.readouterr().err


def test_messy_trees_are_read_safely_and_every_skip_is_counted(make_recipe, tmp_path, corpora, tiny_model_dir):
    import shutil

    from adapt.data.prepare import prepare_data
    from adapt.model import load_tokenizer

    root = tmp_path / "messy"
    shutil.copytree(corpora["domain"], root)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a symlink loop must not hang the listing
    (root / "dangling.py").symlink_to(root / "nowhere.py")
    with open(root / "huge.py", "wb") as f:  # 100 MB on one line: skipped by size, never read
        f.write(b"x" * 100_000_000)
    (root / "latin1.py").write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    (root / "blob.py").write_bytes(b"\x00\x01\x02" * 100)
    loaded = load_recipe(make_recipe(), [f"data.sources.0.root={root}"])
    data = prepare_data(loaded, load_tokenizer(str(tiny_model_dir)))
    fate = {row["path"]: row["reason"] for row in data.manifest if row["source"] == "domain"}
    assert fate["huge.py"] == "too_large" and fate["latin1.py"] == "not_utf8" and fate["blob.py"] == "binary"
    assert not any(path.startswith("loop/") for path in fate)
    dropped = data.report["curation"]["dropped"]["domain"]
    assert {"too_large": 1, "not_utf8": 1, "binary": 1}.items() <= dropped.items()


def test_a_file_that_cannot_be_read_is_a_counted_skip(tmp_path):
    """Root reads any file whatever its mode, so a file gone between listing and reading stands in."""
    from adapt.data.sources import read_text_file

    assert read_text_file(tmp_path / "removed_after_listing.py") == (None, "unreadable")
