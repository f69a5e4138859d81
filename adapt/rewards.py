"""Reward functions for GRPO, in the form trl calls them: ``f(prompts, completions, **columns)``
returns one float per completion (``completion_ids``, the dataset's other columns such as
``task_index``, and trl's ``log_metric`` come as keyword arguments).

Built-ins, named in the recipe's ``grpo.rewards``:
- ``execution``: the share of the task's tests that pass when the prompt plus the completion runs
  in the sandbox (``adapt.sandbox``). A crash, hang, fork bomb, memory bomb or flood of output
  scores 0, is counted (``sandbox/<status>``), and never stops training.
- ``format``: 1 when the answer parses as Python (the prompt plus the completion, or the
  completion alone for a task that asks for a whole program), else 0.
- ``length``: minus the completion's share of ``max_new_tokens``, so shorter answers win ties.
User functions are named by ``module:function`` and take the same arguments.
"""

from __future__ import annotations

import ast
import importlib
import math
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from adapt.recipe.load import LoadedRecipe

# Where a HumanEval-style completion ends (Chen et al. 2021, §2.3): the model has finished the
# function body once it starts another top-level statement.
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")


def truncate(completion: str, task) -> str:
    """The part of a completion that is the answer: for a task whose completion continues its
    prompt, up to the first new top-level statement after the answer's start (a completion that
    opens with the whole ``def`` keeps it); a whole program (MBPP) is kept as it is."""
    if not task.completes_prompt:
        return completion
    start = len(completion) - len(completion.lstrip("\n")) + 1
    cuts = [i for i in (completion.find(s, start) for s in STOP_SEQUENCES) if i >= 0]
    return completion[: min(cuts, default=len(completion))]


class Reward:
    """A named reward function; trl logs ``rewards/<name>/mean`` and ``/std`` for each."""

    def __init__(self, name: str, function):
        self.__name__, self.function = name, function

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return self.function(prompts, completions, **kwargs)


def execution_reward(tasks, limits, workers: int):
    from adapt.code_tasks import score

    def reward(prompts, completions, task_index, log_metric=None, **_) -> list[float]:
        jobs = [(tasks[i], truncate(c, tasks[i])) for i, c in zip(task_index, completions)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            scores = list(pool.map(lambda job: score(job[0], job[1], limits), jobs))
        if log_metric is not None:
            statuses = Counter(s.status for s in scores)
            for status in ("ok", "error", "timeout", "output_limit", "killed", "sandbox_error"):
                log_metric(f"sandbox/{status}", float(statuses.get(status, 0)))
        return [s.fraction for s in scores]

    return reward


def format_reward(tasks):
    def reward(prompts, completions, task_index, **_) -> list[float]:
        rewards = []
        for i, completion in zip(task_index, completions):
            task = tasks[i]
            program = task.prompt + truncate(completion, task) if task.completes_prompt else completion
            try:
                ast.parse(program)
                rewards.append(1.0)
            except (SyntaxError, ValueError):  # ValueError: a null byte in the source
                rewards.append(0.0)
        return rewards

    return reward


def length_penalty(max_new_tokens: int):
    def reward(prompts, completions, completion_ids, **_) -> list[float]:
        return [-len(ids) / max_new_tokens for ids in completion_ids]

    return reward


def build_rewards(loaded: LoadedRecipe, tasks) -> tuple[list, list[float]]:
    """The recipe's reward functions and their weights; a user function that cannot be imported
    is an error naming its key."""
    from adapt.sandbox import SandboxLimits

    grpo = loaded.recipe.grpo
    limits = SandboxLimits(timeout_s=grpo.sandbox.timeout_s, cpu_s=math.ceil(grpo.sandbox.timeout_s),
                           memory_mb=grpo.sandbox.memory_mb,
                           allow_weak_isolation=grpo.sandbox.allow_weak_isolation)
    rewards = []
    for i, spec in enumerate(grpo.rewards):
        if spec.name == "execution":
            function = execution_reward(tasks, limits, grpo.sandbox.workers)
        elif spec.name == "format":
            function = format_reward(tasks)
        elif spec.name == "length":
            function = length_penalty(grpo.max_new_tokens)
        else:  # the user's own, as it is: trl names it, and awaits it if it is async
            rewards.append(import_function(loaded, spec.function, f"grpo.rewards.{i}.function"))
            continue
        rewards.append(Reward(spec.label, function))
    return rewards, [spec.weight for spec in grpo.rewards]


def import_function(loaded: LoadedRecipe, path: str, key: str):
    module_name, _, attribute = path.partition(":")
    beside = str(loaded.base_dir.resolve())
    if beside not in sys.path:  # a module beside the recipe is found, after installed ones
        sys.path.append(beside)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a missing module, or one that fails as it loads (SyntaxError, NameError, ...)
        raise loaded.error(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}", key,
                           fix="give module:function of an importable module (a .py file beside the recipe works)"
                           ) from None
    function = getattr(module, attribute, None)
    if function is None:
        raise loaded.error(f"module {module_name!r} has no {attribute!r}", key, fix="check the function's name")
    if not callable(function):
        raise loaded.error(f"{path} is not a function", key, fix="name a function (prompts, completions, **kwargs)")
    return function
