"""HumanEval/MBPP-shaped tasks: loading (and its errors), scoring in the sandbox, pass@k."""

from __future__ import annotations

import json

import pytest

from adapt.code_tasks import CodeTask, builtin_tasks_path, load_tasks, pass_at_k, score
from adapt.errors import AdaptError
from adapt.sandbox import SandboxLimits

ADD = {
    "task_id": "test/add",
    "prompt": 'from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    """Add two numbers."""\n',
    "entry_point": "add",
    "canonical_solution": "    return a + b\n",
    "test": ("METADATA = {'author': 'tests'}\n\n\ndef check(candidate):\n"
             "    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n"
             "    assert candidate(-1, 1) == 0\n    assert candidate(2, 2) == 4\n"),
}
MBPP = {
    "task_id": 7,
    "text": "Write a function that returns the last element of a list.",
    "code": "def last(items):\n    return items[-1]\n",
    "test_setup_code": "import math",
    "test_list": ["assert last([1, 2, 3]) == 3", "assert last(['a']) == 'a'",
                  "assert last([math.pi, 0]) == 0"],
}


def write_tasks(tmp_path, *rows) -> str:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(row if isinstance(row, str) else json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture
def add_task(tmp_path) -> CodeTask:
    return load_tasks(write_tasks(tmp_path, ADD))[0]


def test_humaneval_task_is_split_into_cases(add_task):
    assert add_task.entry_point == "add" and add_task.completes_prompt
    assert add_task.tests == ["assert candidate(1, 2) == 3", "assert candidate(0, 0) == 0",
                              "assert candidate(-1, 1) == 0", "assert candidate(2, 2) == 4"]
    assert "METADATA" in add_task.preamble


@pytest.mark.parametrize("completion, passed", [
    ("    return a + b\n", 4),
    ("    return None\n", 0),
    ("    return a * b\n", 2),  # right for 0+0 and 2+2 only
    # a whole function instead of a continuation; it relies on the prompt's import
    ("def add(a: int, b: int) -> List[int]:\n    return a + b\n", 4),
    # it runs as __main__, and a case that exits fails that case alone
    ("    return a + b\nif __name__ == '__main__':\n    print(add(1, 2))\n", 4),
    ("    if a == 0:\n        import os; os._exit(0)\n    return a + b\n", 3),
])
def test_score_counts_passing_cases(add_task, completion, passed):
    result = score(add_task, completion)
    assert (result.passed, result.total, result.status) == (passed, 4, "ok")
    assert result.fraction == passed / 4


@pytest.mark.parametrize("completion, status", [
    ("    while True:\n        pass\n", "timeout"),
    ("    return a + b\nraise SystemError('crash at import')\n", "error"),
    ("    return a + b\nimport os\nwhile True:\n    os.fork()\n", None),  # contained, never credited
    ("    return a + b\nprint('y' * 10**6)\n", "output_limit"),
])
def test_a_program_that_does_not_finish_scores_zero(add_task, completion, status):
    result = score(add_task, completion, limits=SandboxLimits(timeout_s=1.5))
    assert result.fraction == 0.0 and result.passed == 0
    assert status is None or result.status == status


def test_early_exit_and_forged_results_score_zero(add_task):
    for completion in ("    return a + b\nimport sys\nsys.exit(0)\n",
                       "    return a + b\nprint('\\n' + '0' * 32 + ' 1111')\nimport os\nos._exit(0)\n"):
        result = score(add_task, completion)
        assert (result.status, result.passed) == ("ok", 0)


# GRPO optimises against the reward, so the ways to score without solving must score 0.
# Each completion below returns None (or exits), which fails every case of `add`.
FORGE = "print('\\n' + {} + ' 1111', flush=True)\nimport os\nos._exit(0)\n"


@pytest.mark.parametrize("completion", [
    # rebinding builtins does not change how the harness runs the tests
    "    return None\nimport builtins\nbuiltins.exec = lambda *a, **k: None\n",
    "    return None\nimport builtins\nbuiltins.compile = lambda *a, **k: compile('pass', '', 'exec')\n",
    "    return None\nimport builtins, os\nbuiltins.BaseException = builtins.Exception = type('E', (), {})\n"
    "os.write = lambda fd, data: len(data)\n",
    # the token is not to be had: not on stdin, nor through /proc
    "    return None\n" + FORGE.format("__import__('sys').stdin.readline().strip()"),
    "    return None\n" + FORGE.format("open('/proc/self/fd/0').read().strip()"),
    "    return None\n" + FORGE.format("open(f'/proc/{__import__(\"os\").getppid()}/fd/0').read().strip()"),
    "    return None\nprint('\\n' + '0' * 32 + ' 1111')\n",  # a forged line without exiting
])
def test_gaming_the_harness_scores_nothing(add_task, completion):
    result = score(add_task, completion)
    assert result.passed == 0, result


@pytest.mark.parametrize("exit_call", [
    "import sys; sys.exit(0)", "import os; os._exit(0)", "raise SystemExit(0)", "raise BaseException",
    "raise KeyboardInterrupt", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
])
def test_exiting_from_a_test_or_while_defined_scores_zero(add_task, exit_call):
    in_case = score(add_task, f"    {exit_call}\n    return a + b\n")
    assert (in_case.passed, in_case.status) == (0, "ok")
    assert score(add_task, f"    return a + b\n{exit_call}\n").passed == 0


def test_tests_call_the_real_builtins(tmp_path):
    row = {"task_id": "half", "prompt": "def half(x):\n", "entry_point": "half",
           "test": "def check(candidate):\n    assert abs(candidate(3) - 1.5) < 1e-9\n"
                   "    assert len([candidate(0)]) == 1 and abs(candidate(0)) < 1e-9\n"}
    task = load_tasks(write_tasks(tmp_path, row))[0]
    assert score(task, "    return x / 2\n").passed == 2
    assert score(task, "    return 99\nabs = lambda x: 0\n").passed == 0
    assert score(task, "    return 99\nimport builtins\nbuiltins.abs = lambda x: 0\n").passed == 0


def test_check_setup_statements_run_before_each_case(tmp_path):
    test = ("def check(fn):\n    import math\n    base = 10\n    assert fn(base) == 11\n"
            "    for x in range(3):\n        assert fn(x) == x + 1\n"
            "    base = -1\n    assert fn(base) == 0\n")
    row = {"task_id": "inc", "prompt": "def inc(x):\n", "entry_point": "inc", "test": test}
    task = load_tasks(write_tasks(tmp_path, row))[0]
    assert len(task.tests) == 3
    assert score(task, "    return x + 1\n").fraction == 1.0
    assert score(task, "    return x + 1 if x > 5 else 0\n").passed == 2  # fn(10) and fn(-1): base is reset


def test_every_builtin_task_is_solved_by_its_canonical_solution():
    tasks = load_tasks(builtin_tasks_path())
    assert len(tasks) >= 20 and len({t.task_id for t in tasks}) == len(tasks)
    for task in tasks:
        assert 3 <= len(task.tests) <= 5, task.task_id
        assert score(task, task.canonical_solution).fraction == 1.0, task.task_id


def test_mbpp_rows_load_and_score(tmp_path):
    task = load_tasks(write_tasks(tmp_path, MBPP))[0]
    assert (task.task_id, task.entry_point, task.completes_prompt) == ("7", "last", False)
    assert score(task, task.canonical_solution).fraction == 1.0
    assert score(task, "def last(items):\n    return items[0]\n").passed == 1
    row = dict(MBPP, task_id=8, test_list=["assert set(pairs([1, 2])) == {(1, 2)}"], prompt="pairs")
    del row["text"]
    assert load_tasks(write_tasks(tmp_path, row))[0].entry_point == "pairs"


def test_missing_file(tmp_path):
    with pytest.raises(AdaptError, match="task file not found") as info:
        load_tasks(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(info.value)


def test_line_that_is_not_json(tmp_path):
    path = write_tasks(tmp_path, ADD, "{not json\n")
    with pytest.raises(AdaptError, match="not valid JSON") as info:
        load_tasks(path)
    assert f"{path}:2:" in str(info.value)


def test_missing_field(tmp_path):
    row = {key: value for key, value in ADD.items() if key != "entry_point"}
    path = write_tasks(tmp_path, row)
    with pytest.raises(AdaptError, match="entry_point: missing field") as info:
        load_tasks(path)
    assert f"{path}:1:" in str(info.value)


@pytest.mark.parametrize("row, key", [
    (dict(ADD, test="def check(candidate):\n    assert candidate(1, 2) == = 3\n"), "test"),
    (dict(MBPP, test_list=["assert last([1]) == 1", "assert last([1) == 1"]), "test_list[1]"),
])
def test_tests_that_do_not_parse(tmp_path, row, key):
    path = write_tasks(tmp_path, ADD | {"task_id": "first"}, "\n", row)
    with pytest.raises(AdaptError, match="tests do not parse") as info:
        load_tasks(path)
    assert f"{path}:3: {key}:" in str(info.value)


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 0.4), (10, 0, 1, 0.0), (10, 0, 5, 0.0), (7, 7, 3, 1.0), (10, 8, 3, 1.0), (4, 1, 2, 0.5),
])
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
