"""GRPO on the tiny model: rewards are logged per function and vary within a group; the
execution reward scores correct, wrong and partly correct code; bad rewards and tasks are
clear errors before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapt.cli import main
from test_sft import series

TASKS = [
    {"task_id": "t/add", "prompt": "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n", "entry_point": "add",
     "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n"
             "    assert candidate(-1, 1) == 0\n    assert candidate(2, 2) == 4\n"},
    {"task_id": "t/neg", "prompt": "def neg(x):\n    \"\"\"Return -x.\"\"\"\n", "entry_point": "neg",
     "test": "def check(candidate):\n    assert candidate(1) == -1\n    assert candidate(0) == 0\n"},
]
# A reward that depends on what was sampled, so a group's rewards differ even when no
# completion passes a test (a tiny random model's usual case).
USER_REWARDS = "def distinct_chars(prompts, completions, **kwargs):\n    return [len(set(c)) / 10 for c in completions]\n"


@pytest.fixture
def grpo_recipe(make_recipe, tmp_path):
    def make(name: str, rewards: list[dict] | None = None, tasks: list[dict] = TASKS) -> Path:
        (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
        (tmp_path / "my_rewards.py").write_text(USER_REWARDS)
        rewards = rewards or [{"name": "execution"}, {"name": "format", "weight": 0.2},
                              {"name": "length", "weight": 0.05}, {"function": "my_rewards:distinct_chars"}]
        return make_recipe(
            name, kind="grpo",
            data={"sources": [{"name": "tasks", "kind": "code_tasks", "path": "tasks.jsonl"}]},
            grpo={"rewards": rewards, "num_generations": 4, "max_new_tokens": 12,
                  "sandbox": {"timeout_s": 5, "workers": 2}},
            train={"seq_len": 128, "batch_size": 8, "max_steps": 2, "lr": 1e-3, "logging_steps": 1,
                   "save_steps": 2, "precision": "fp32", "output_dir": str(tmp_path / "runs" / name)})

    return make


def test_grpo_logs_each_reward_and_rewards_vary_within_groups(grpo_recipe):
    recipe = grpo_recipe("grpo")
    assert main(["train", str(recipe)]) == 0
    run = recipe.parent / "runs" / "grpo"
    for name in ("execution", "format", "length", "distinct_chars"):
        assert set(series(run, f"train/rewards/{name}/mean")) == {1, 2}, name
    assert max(series(run, "train/rewards/distinct_chars/std").values()) > 0
    assert min(series(run, "train/frac_reward_zero_std").values()) < 1, "some group's rewards differ"
    assert sum(series(run, "train/sandbox/ok").values()) + sum(series(run, "train/sandbox/error").values()) > 0
    assert (run / "final" / "adapter_config.json").is_file()


def test_execution_reward_gives_full_no_and_partial_credit():
    from adapt.code_tasks import load_tasks
    from adapt.rewards import execution_reward
    from adapt.sandbox import SandboxLimits

    path = Path(__file__).parent / "_tasks.jsonl"
    try:
        path.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
        tasks = load_tasks(path)
    finally:
        path.unlink()
    reward = execution_reward(tasks, SandboxLimits(timeout_s=5), workers=2)
    completions = ["    return a + b\n", "    return str(a)\n", "    return 2 * a if b == a else b\n",
                   "    while True:\n        pass\n", "    return a + b\ndef helper():\n    import os\n"]
    logged = {}
    scores = reward([t.prompt for t in tasks[:1]] * 5, completions, task_index=[0] * 5,
                    log_metric=lambda name, value: logged.__setitem__(name, value))
    assert scores[0] == 1.0 and scores[1] == 0.0
    assert scores[2] == pytest.approx(0.5), "2 of 4 asserts pass: (0,0) and (2,2)"
    assert scores[3] == 0.0 and logged["sandbox/timeout"] == 1.0
    assert scores[4] == 1.0, "the completion is cut where the model starts another top-level definition"


def test_reward_function_that_cannot_be_imported(grpo_recipe, capsys):
    recipe = grpo_recipe("bad_reward", rewards=[{"function": "no_such_module:reward"}])
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "grpo.rewards.0.function" in err and "no_such_module" in err and "Traceback" not in err


def test_task_whose_tests_do_not_parse(grpo_recipe, capsys):
    broken = dict(TASKS[0], test="def check(candidate):\n    assert candidate(1, 2) ==\n")
    recipe = grpo_recipe("bad_tests", tasks=[TASKS[1], broken])
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "tasks.jsonl:2" in err and "Traceback" not in err


def test_batch_must_hold_whole_groups(grpo_recipe, capsys):
    assert main(["validate", str(grpo_recipe("groups")), "train.batch_size=6"]) == 2
    assert "train.batch_size" in capsys.readouterr().err


def test_answers_are_cut_where_the_function_ends_and_programs_are_kept():
    from adapt.code_tasks import CodeTask
    from adapt.rewards import format_reward, truncate

    humaneval = CodeTask("h", "def f(x):\n", "f", ["assert f(1) == 1"])
    mbpp = CodeTask("m", "Write f.", "f", ["assert f(1) == 1"], completes_prompt=False)
    assert truncate("    return x\ndef g():\n    pass\n", humaneval) == "    return x"
    assert truncate("\ndef f(x):\n    return x\n\nprint(f(1))\n", humaneval) == "\ndef f(x):\n    return x\n"
    program = "import re\ndef f(x):\n    return x\n"
    assert truncate(program, mbpp) == program
    reward = format_reward([humaneval, mbpp])
    assert reward(["", ""], ["    return x\n", program], task_index=[0, 1]) == [1.0, 1.0]
    assert reward(["", ""], ["    return (\n", "def f(:"], task_index=[0, 1]) == [0.0, 0.0]


def test_reward_module_that_fails_to_load_is_a_clear_error(grpo_recipe, capsys):
    recipe = grpo_recipe("broken_module", rewards=[{"function": "broken_rewards:distinct_chars"}])
    (recipe.parent / "broken_rewards.py").write_text("def distinct_chars(:\n")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "grpo.rewards.0.function" in err and "SyntaxError" in err and "Traceback" not in err


@pytest.mark.parametrize("override,key", [("train.max_tokens=1000", "train.max_tokens"),
                                          ("train.trainer_args={num_generations: 8}", "train.trainer_args.num_generations")])
def test_budget_and_managed_keys(grpo_recipe, capsys, override, key):
    assert main(["validate", str(grpo_recipe("keys")), override]) == 2
    assert key in capsys.readouterr().err


def test_without_namespaces_grpo_refuses_unless_told(grpo_recipe, capsys, monkeypatch):
    from adapt import sandbox

    monkeypatch.setattr(sandbox, "_use_namespaces", False)
    recipe = grpo_recipe("weak")
    assert main(["validate", str(recipe)]) == 2
    assert "grpo.sandbox.allow_weak_isolation" in capsys.readouterr().err
    assert main(["validate", str(recipe), "grpo.sandbox.allow_weak_isolation=true"]) == 0


def test_override_into_a_list_of_sections_is_checked(grpo_recipe, capsys):
    assert main(["validate", str(grpo_recipe("override")), "grpo.rewards.0.name=exec"]) == 2
    err = capsys.readouterr().err
    assert "grpo.rewards.0.name" in err and "'execution'" in err
    assert main(["validate", str(grpo_recipe("override2")), "grpo.rewards.0.wieght=2"]) == 2
    assert "did you mean 'weight'" in capsys.readouterr().err
