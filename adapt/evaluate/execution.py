"""Execution-based pass@k: sample n completions per task, run each against the task's tests in
the sandbox, and average the unbiased estimator (Chen et al. 2021) over tasks."""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from adapt.evaluate.generation import generate_batched


def mean_pass_at_k(correct: list[int], n: int, ks: list[int]) -> dict[str, float]:
    """``correct[t]`` of ``n`` samples of task t passed: the mean pass@k over tasks, per k."""
    from adapt.code_tasks import pass_at_k

    return {f"pass@{k}": sum(pass_at_k(n, c, k) for c in correct) / len(correct) for k in ks}


def evaluate_tasks(model, tokenizer, tasks, spec, batch_size: int) -> dict:
    """``spec`` is the recipe's ``evaluation.pass_at_k``. Returns pass@k per k, the share of all
    samples that passed, and the sandbox's statuses."""
    import torch

    from adapt.code_tasks import score
    from adapt.rewards import truncate
    from adapt.sandbox import SandboxLimits

    tasks = tasks[: spec.max_samples] if spec.max_samples else tasks
    torch.manual_seed(spec.seed)
    prompts = [tokenizer(t.prompt, add_special_tokens=False)["input_ids"] for t in tasks]
    generated = generate_batched(model, tokenizer, prompts, spec.max_new_tokens, max(batch_size, spec.samples),
                                 "pass@k samples", sample={"temperature": spec.temperature, "top_p": spec.top_p},
                                 num_return_sequences=spec.samples)
    limits = SandboxLimits(timeout_s=spec.timeout_s, cpu_s=math.ceil(spec.timeout_s), memory_mb=spec.memory_mb,
                           allow_weak_isolation=spec.allow_weak_isolation)
    jobs = [(task, truncate(tokenizer.decode(ids, skip_special_tokens=True), task))
            for t, task in enumerate(tasks) for ids in generated[t * spec.samples: (t + 1) * spec.samples]]
    with ThreadPoolExecutor(max_workers=spec.workers) as pool:
        scores = list(pool.map(lambda job: score(job[0], job[1], limits), jobs))
    passed = [s.passed == s.total and s.status == "ok" for s in scores]
    correct = [sum(passed[t * spec.samples: (t + 1) * spec.samples]) for t in range(len(tasks))]
    return {**mean_pass_at_k(correct, spec.samples, spec.k), "tasks": len(tasks), "samples": spec.samples,
            "passed_share": sum(passed) / len(passed), "sandbox": dict(Counter(s.status for s in scores))}
