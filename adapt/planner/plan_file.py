"""The plan file, ``mixtures/<name>.plan.yaml``: the chosen mixture in the format the data pipeline
reads (``mixture:``, like any mixture file), with the fitted laws and diagnostics under ``plan:``.
A recipe uses it as ``data.mixture: mixtures/<name>.plan.yaml``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from adapt.fileio import atomic_write


def plan_mixture(ratio: float, domain_source: str, general_source: str) -> dict[str, float]:
    """Token shares that sum to exactly 1 after rounding (the recipe loader checks to 1e-6)."""
    domain = round(float(ratio), 4)
    return {domain_source: domain, general_source: round(1.0 - domain, 4)}


def plain(value):
    """numpy scalars and arrays -> Python numbers and lists; refuses NaN and infinities, because
    no plan with a NaN is ever written."""
    data = json.loads(json.dumps(value, default=_to_builtin, allow_nan=True))
    _check_finite(data, "plan")
    return data


def write_plan(path: Path, plan: dict, domain_source: str, general_source: str, description: str) -> dict:
    """Write the plan file atomically; return what was written."""
    document = plain({
        "description": description,
        "mixture": plan_mixture(plan["ratio"], domain_source, general_source),
        "plan": plan,
    })
    with atomic_write(path) as f:
        f.write("# Written by `adapt plan`: the mixture below is the planner's choice; `plan:` says why.\n")
        yaml.safe_dump(document, f, sort_keys=False, allow_unicode=True, width=100)
    return document


def _to_builtin(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to a plan file")


def _check_finite(value, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: refusing to write a plan with a NaN or infinite value")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}.{i}")
