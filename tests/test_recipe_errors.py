"""Each kind of bad input gets one clear message naming file, key, line and fix; exit code 2;
no traceback; nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapt.cli import main


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def assert_user_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def test_unknown_key_suggests_the_right_one(make_recipe, capsys, tmp_path):
    recipe = edit(make_recipe(), "  lr: 0.003", "  lr: 0.003\n  warmup_ration: 0.1")
    code, err = run_cli(capsys, "train", str(recipe))
    assert_user_error(code, err, str(recipe), "train.warmup_ration", "unknown key", "did you mean 'warmup_ratio'")
    assert not (tmp_path / "runs").exists(), "nothing may be written before validation passes"


def test_unknown_key_inside_a_source_names_its_line(make_recipe, capsys):
    recipe = edit(make_recipe(), "    include:", "    includ: ['*.c']\n    include:")
    code, err = run_cli(capsys, "validate", str(recipe))
    line = next(i for i, l in enumerate(recipe.read_text().splitlines(), 1) if "includ:" in l)
    assert_user_error(code, err, f"{recipe}:{line}:", "data.sources.0.includ", "did you mean 'include'")


def test_wrong_type(make_recipe, capsys):
    code, err = run_cli(capsys, "validate", str(make_recipe()), "train.batch_size=lots")
    assert_user_error(code, err, "train.batch_size", "valid integer", "'lots'")


@pytest.mark.parametrize("override,key", [("adapter.r=0", "adapter.r"), ("train.lr=0", "train.lr"),
                                          ("train.lr=-1e-4", "train.lr")])
def test_out_of_range(make_recipe, capsys, override, key):
    code, err = run_cli(capsys, "validate", str(make_recipe()), override)
    assert_user_error(code, err, key, "greater than 0", "fix:")


def test_seq_len_longer_than_the_model_allows(make_recipe, capsys):
    code, err = run_cli(capsys, "validate", str(make_recipe()), "train.seq_len=4096")
    assert_user_error(code, err, "train.seq_len", "longer than the model allows (512)")


def test_missing_data_path(make_recipe, capsys, tmp_path):
    code, err = run_cli(capsys, "train", str(make_recipe()), f"data.sources.0.root={tmp_path / 'nope'}")
    assert_user_error(code, err, "data.sources.0.root", "does not exist")
    assert not (tmp_path / "runs").exists()


def test_glob_matching_nothing(make_recipe, capsys):
    code, err = run_cli(capsys, "validate", str(make_recipe()), "data.sources.0.include=['**/*.rs']")
    assert_user_error(code, err, "data.sources.0.include", "matches", "fix:")


def test_empty_corpus(make_recipe, capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.py").write_text("")
    code, err = run_cli(capsys, "validate", str(make_recipe()), f"data.sources.0.root={empty}")
    assert_user_error(code, err, "data.sources.0", "is empty")


def test_invalid_yaml(make_recipe, capsys):
    recipe = make_recipe()
    recipe.write_text(recipe.read_text() + "train: [unclosed\n")
    code, err = run_cli(capsys, "validate", str(recipe))
    assert_user_error(code, err, str(recipe), "invalid YAML")


def test_python_object_tag_is_refused(make_recipe, capsys, tmp_path):
    recipe = make_recipe()
    marker = tmp_path / "pwned"
    recipe.write_text(recipe.read_text() + f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    code, err = run_cli(capsys, "validate", str(recipe))
    assert_user_error(code, err, "YAML tag not allowed", "safe_load")
    assert not marker.exists()


def test_override_with_unknown_path(make_recipe, capsys):
    code, err = run_cli(capsys, "validate", str(make_recipe()), "train.max_stesp=3")
    assert_user_error(code, err, "train.max_stesp", "did you mean 'max_steps'")


def test_missing_recipe_file(capsys, tmp_path):
    code, err = run_cli(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert_user_error(code, err, "nope.yaml", "file not found")


def test_mixture_must_sum_to_one_and_name_sources(make_recipe, capsys):
    code, err = run_cli(capsys, "validate", str(make_recipe()), "data.mixture.general=0.5")
    assert_user_error(code, err, "data.mixture", "sum to 1.25")
    code, err = run_cli(capsys, "validate", str(make_recipe()), "data.mixture={domain: 0.75, genral: 0.25}")
    assert_user_error(code, err, "data.mixture.genral", "did you mean 'general'")


def test_duplicate_source_name(make_recipe, capsys):
    code, err = run_cli(capsys, "validate", str(make_recipe()), "data.sources.1.name=domain")
    assert_user_error(code, err, "data.sources.1.name", "used twice")


def test_unknown_trainer_arg(make_recipe, capsys):
    code, err = run_cli(capsys, "validate", str(make_recipe()), "train.trainer_args={dataloader_pin_memry: false}")
    assert_user_error(code, err, "train.trainer_args.dataloader_pin_memry", "did you mean 'dataloader_pin_memory'")
    code, err = run_cli(capsys, "validate", str(make_recipe()), "train.trainer_args={learning_rate: 0.1}")
    assert_user_error(code, err, "train.trainer_args.learning_rate", "use train.lr instead")


def test_missing_model_directory(make_recipe, capsys, tmp_path):
    code, err = run_cli(capsys, "validate", str(make_recipe()), f"model.base_model={tmp_path}/no-model")
    assert_user_error(code, err, "model.base_model", "does not exist")


def test_override_into_a_missing_list_item(make_recipe, capsys):
    code, err = run_cli(capsys, "validate", str(make_recipe()), "data.sources.5.name=x")
    assert_user_error(code, err, "data.sources.5.name", "does not exist")


def test_corrupt_run_state_is_a_user_error(make_recipe, capsys, tmp_path):
    run_dir = tmp_path / "runs" / "recipe"
    run_dir.mkdir(parents=True)
    (run_dir / "run_state.json").write_text("{not json")
    code, err = run_cli(capsys, "train", str(make_recipe()))
    assert_user_error(code, err, "run_state.json", "cannot read the run state")
