"""Everything one model is measured on, and the base model's numbers cached by fingerprint.

``Evaluator`` is built once per run (or ``adapt eval``) from the recipe: the eval sets' documents,
the code tasks, the FIM sentinels. ``measure(model)`` runs every metric on a model; ``base(...)``
returns the base model's results from the cache, or measures them once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from adapt.fileio import write_json
from adapt.paths import cache_dir
from adapt.recipe.load import LoadedRecipe

# Part of every cached result's fingerprint: raise it when a metric's definition changes, so that
# base numbers measured the old way are never compared with new ones.
METRICS_VERSION = 2


@dataclass
class Evaluator:
    loaded: LoadedRecipe
    tokenizer: object
    sets: list  # of adapt.evaluate.sets.DocumentSet
    tasks: list | None  # of adapt.code_tasks.CodeTask
    sentinels: object | None  # adapt.data.fim.FimSentinels, when infilling is measured

    @property
    def batch_size(self) -> int:
        recipe = self.loaded.recipe
        return recipe.evaluation.batch_size or recipe.train.batch_size

    def measure(self, model) -> dict:
        """Loss and perplexity per set and category, completion accuracy, infill exact match, pass@k."""
        import torch

        from adapt.evaluate.completion import completion_accuracy
        from adapt.evaluate.execution import evaluate_tasks
        from adapt.evaluate.infill import infill_exact_match
        from adapt.evaluate.perplexity import set_losses

        evaluation, seq_len = self.loaded.recipe.evaluation, self.loaded.recipe.train.seq_len
        training = model.training
        model.eval()
        # Sampling (pass@k) must not move the training RNG: a run trains the same whether or not
        # its base numbers were cached.
        with torch.random.fork_rng():
            try:
                if self.loaded.recipe.train.objective == "diffusion":
                    return self._measure_diffusion(model)
                results: dict = {"sets": {}}
                for document_set in self.sets:
                    entry = {"role": document_set.spec.role,
                             **set_losses(model, document_set, seq_len, self.batch_size)}
                    if evaluation.completion.enabled:
                        entry["completion"] = completion_accuracy(model, self.tokenizer, document_set,
                                                                  evaluation.completion, seq_len, self.batch_size)
                    if self.sentinels is not None:
                        entry["infill"] = infill_exact_match(model, self.tokenizer, document_set, evaluation.infill,
                                                             self.sentinels, seq_len, self.batch_size)
                    results["sets"][document_set.spec.name] = entry
                if self.tasks:
                    results["pass_at_k"] = evaluate_tasks(model, self.tokenizer, self.tasks, evaluation.pass_at_k,
                                                          self.batch_size)
                return results
            finally:
                model.train(training)

    def _measure_diffusion(self, model) -> dict:
        """A diffusion model's masked-token loss per set, and infill exact match by sampling."""
        from adapt.diffusion import evaluate as diffusion
        from adapt.diffusion.attention import add_mask_token, make_bidirectional

        recipe = self.loaded.recipe
        add_mask_token(self.tokenizer, model, recipe.diffusion.mask_token)  # a base measured as the run began
        make_bidirectional(model)  # loading a saved diffusion model restores causal attention flags
        results: dict = {"sets": {}}
        for document_set in self.sets:
            entry = {"role": document_set.spec.role,
                     **diffusion.set_losses(model, self.tokenizer, document_set, recipe.diffusion,
                                            recipe.train.seq_len, self.batch_size)}
            if recipe.evaluation.infill.enabled is not False:
                entry["infill"] = diffusion.infill_exact_match(model, self.tokenizer, document_set,
                                                               recipe.evaluation.infill, recipe.diffusion,
                                                               recipe.train.seq_len, self.batch_size)
            results["sets"][document_set.spec.name] = entry
        return results

    def base(self, model_path: str, model_factory) -> dict:
        """The base model's results: cached, else measured on ``model_factory()`` and cached."""
        path = cache_dir() / "eval" / f"{self.fingerprint(model_path)}.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                path.unlink(missing_ok=True)  # a damaged entry is measured again, never trusted
        results = self.measure(model_factory())
        write_json(path, results)
        return results

    def fingerprint(self, model_path: str) -> str:
        """What the base results depend on: the model's files and loading options, the tokenizer,
        every eval document's tokens, the tasks and the metrics' settings."""
        from adapt.data.tokens import tokenizer_fingerprint
        from adapt.device import cuda_available
        from adapt.model import model_dtype

        recipe = self.loaded.recipe
        settings = recipe.evaluation.model_dump(mode="json", include={"completion", "infill", "pass_at_k"})
        quantised = recipe.adapter.model_dump(mode="json") if recipe.adapter.method == "qlora" else None
        digest = hashlib.sha256(json.dumps({
            "version": METRICS_VERSION, "model": _model_identity(model_path),
            "dtype": model_dtype(recipe.model, recipe.adapter), "cuda": cuda_available(), "quantised": quantised,
            "attn": recipe.model.attn_implementation, "seq_len": recipe.train.seq_len,
            "adapters": [_model_identity(path) for path in recipe.model.adapters],
            "rope": recipe.model.model_dump(mode="json", include={"rope_theta", "rope_scaling", "max_position_embeddings"}),
            "tokenizer": tokenizer_fingerprint(self.tokenizer), "infill": self.sentinels is not None,
            "settings": settings, "tasks": [t.task_id + t.prompt for t in self.tasks or []],
            **({"diffusion": recipe.diffusion.model_dump(mode="json", include={"mask_token", "eval_t", "sample_steps"})}
               if recipe.train.objective == "diffusion" else {}),
        }, sort_keys=True).encode())
        for document_set in self.sets:
            digest.update(f"\0{document_set.spec.name}\0{document_set.spec.role}".encode())
            for doc in document_set.docs:
                digest.update(f"\0{doc.name}\0{doc.category}\0".encode())
                digest.update(doc.tokens.tobytes())
        return digest.hexdigest()[:24]


def build_evaluator(loaded: LoadedRecipe, tokenizer) -> Evaluator:
    from adapt.evaluate.sets import load_document_sets

    return Evaluator(loaded, tokenizer, load_document_sets(loaded, tokenizer), recipe_tasks(loaded),
                     _infill_sentinels(loaded, tokenizer))


def recipe_tasks(loaded: LoadedRecipe):
    """The tasks pass@k is measured on, or None."""
    from adapt.code_tasks import builtin_tasks_path, load_tasks
    from adapt.recipe.stages import BUILTIN_TASKS

    tasks = loaded.recipe.evaluation.pass_at_k.tasks
    if tasks is None:
        if loaded.recipe.kind != "grpo":
            return None
        from adapt.train.grpo import load_recipe_tasks

        return load_recipe_tasks(loaded)[1] or None  # the held-out tasks, never the trained ones
    path = builtin_tasks_path() if tasks == BUILTIN_TASKS else loaded.resolve_path(tasks)
    if not path.is_file():
        raise loaded.error(f"task file {path} not found", "evaluation.pass_at_k.tasks",
                           fix="give a jsonl of HumanEval- or MBPP-shaped tasks, or 'builtin'")
    return load_tasks(path)


def _infill_sentinels(loaded: LoadedRecipe, tokenizer):
    from adapt.data.fim import find_sentinels
    from adapt.data.prepare import fim_sources

    enabled = loaded.recipe.evaluation.infill.enabled
    if loaded.recipe.train.objective == "diffusion":
        return None  # diffusion infills by unmasking, without sentinels
    if enabled is False or (enabled == "auto" and not fim_sources(loaded)):
        return None
    sentinels = find_sentinels(tokenizer)
    if sentinels is None and enabled is True:
        raise loaded.error("the tokenizer has no FIM sentinel tokens to infill with", "evaluation.infill.enabled",
                           fix="train with FIM (data.sources.<n>.fim) first, or set enabled: auto")
    return sentinels


def _model_identity(model_path: str) -> dict | str:
    """A local model by its weight and config files' names, sizes and times; a hub id as it is."""
    path = Path(model_path)
    if not path.is_dir():
        return model_path
    files = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix in (".safetensors", ".bin", ".json")))
    return {"path": str(path.resolve()),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}
