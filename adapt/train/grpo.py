"""GRPO with verifiable rewards, with trl's ``GRPOTrainer`` (Shao et al. 2024, DeepSeekMath).

Each task's prompt is sampled ``grpo.num_generations`` times; every completion is scored by the
recipe's reward functions (``adapt.rewards``: running the tests in the sandbox, format, length,
or the user's), and trl turns the scores into group-relative advantages. Generation uses
transformers ``generate``, or vllm when it is installed and a GPU is present.
"""

from __future__ import annotations

from adapt.recipe.load import LoadedRecipe
from adapt.train.runner import Setup

SUMMARY = ("train/reward", "train/reward_std", "train/frac_reward_zero_std")


def load_recipe_tasks(loaded: LoadedRecipe):
    """The recipe's code tasks (train and held-out), with errors that name the file and line."""
    from adapt.code_tasks import builtin_tasks_path, load_tasks
    from adapt.data.sources import DocRef, split_heldout
    from adapt.recipe.stages import BUILTIN_TASKS

    source = loaded.recipe.data.sources[0]
    if source.path == BUILTIN_TASKS:
        path = builtin_tasks_path()
    else:
        path = loaded.resolve_path(source.path)
        if not path.is_file():
            raise loaded.error(f"task file {path} not found", "data.sources.0.path",
                               fix="give a jsonl of HumanEval- or MBPP-shaped tasks, or 'builtin'")
    tasks = load_tasks(path)
    train, heldout = split_heldout([DocRef(str(path), i + 1) for i in range(len(tasks))], source.heldout)
    return [tasks[r.line - 1] for r in train], [tasks[r.line - 1] for r in heldout]


def data(loaded: LoadedRecipe):
    """The training tasks and the data report; a run's steps count completions."""
    from adapt.data.mixture import steps_over_rows
    from adapt.data.rows import Rows, rows_report
    from adapt.train.runner import world_size

    recipe = loaded.recipe
    tasks, heldout = load_recipe_tasks(loaded)
    steps = steps_over_rows(recipe.train, len(tasks) * recipe.grpo.num_generations, world_size=world_size())
    return tasks, rows_report(Rows(recipe.data.sources[0].name, "code_tasks", tasks, heldout, ""), steps, {})


def data_report(loaded: LoadedRecipe) -> tuple[dict, list[dict]]:
    return data(loaded)[1], []


def setup(loaded: LoadedRecipe) -> Setup:
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from adapt.rewards import build_rewards
    from adapt.train.runner import load_base, with_adapter

    recipe, grpo = loaded.recipe, loaded.recipe.grpo
    tasks, report = data(loaded)
    rewards, weights = build_rewards(loaded, tasks)
    model_path, tokenizer, model = load_base(loaded)
    model = with_adapter(loaded, model, [])
    prompts = datasets.Dataset.from_dict({"prompt": [t.prompt for t in tasks], "task_index": list(range(len(tasks)))})

    def make_trainer(args: dict, callbacks: list):
        config = GRPOConfig(**args, num_generations=grpo.num_generations, max_completion_length=grpo.max_new_tokens,
                            temperature=grpo.temperature, top_p=grpo.top_p, beta=grpo.beta,
                            use_vllm=grpo.use_vllm if grpo.use_vllm is not None else _vllm_usable(),
                            reward_weights=weights, trust_remote_code=recipe.model.trust_remote_code)
        return GRPOTrainer(model=model, reward_funcs=rewards, args=config, train_dataset=prompts,
                           processing_class=tokenizer, callbacks=callbacks)

    metrics = SUMMARY + tuple(f"train/rewards/{r.__name__}/mean" for r in rewards)
    return Setup(tokenizer, model_path, report, [], [], 0, make_trainer,
                 summary_metrics=metrics)


def _vllm_usable() -> bool:
    import importlib.util

    from adapt.device import cuda_available

    return importlib.util.find_spec("vllm") is not None and cuda_available()
