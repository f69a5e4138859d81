"""What a run records about itself: git commit, package versions, data statistics."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

PACKAGES = ("adapt", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "mlflow",
            "bitsandbytes", "tokenizers")


def git_commit(directory: Path) -> dict[str, str]:
    """The commit of the git repository holding ``directory``, and whether it has local changes."""
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[f"version.{name}"] = "not installed"
    return found


def tags(recipe_path: Path, model_path: str, trainable: int, total: int) -> dict[str, str]:
    return {
        "recipe.path": str(recipe_path.resolve()),
        "model.path": model_path,
        "model.trainable_params": str(trainable),
        "model.total_params": str(total),
        **git_commit(recipe_path.resolve().parent),
        **versions(),
    }


def data_metrics(report: dict) -> dict[str, float]:
    metrics = {"data/steps": float(report["steps"])}
    if report["train_tokens"] is not None:
        metrics["data/train_tokens"] = float(report["train_tokens"])
    for name, source in report["sources"].items():
        metrics[f"data/{name}/train_documents"] = float(source["train_documents"])
        metrics[f"data/{name}/heldout_documents"] = float(source["heldout_documents"])
        if source["tokens"] is not None:
            metrics[f"data/{name}/tokens"] = float(source["tokens"])
    for name, mix in report["mixture"].items():
        metrics[f"data/{name}/realised_share"] = mix["realised"]
    for name, ev in report["eval"].items():
        if ev["tokens"] is not None:
            metrics[f"data/eval/{name}/tokens"] = float(ev["tokens"])
    return metrics
