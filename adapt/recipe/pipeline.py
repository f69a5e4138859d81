"""Pipeline recipes: a ``stages:`` list, each stage a recipe of its own that starts from the one
before (Granite Code's two CPT phases; Code Llama's CPT, long-context fine-tuning, then instruct).

The recipe's top-level sections are every stage's defaults. A stage gives ``name``, ``carry`` and
any recipe section; each field it gives replaces the default's (a whole ``data.mixture``, a whole
``data.sources`` list, one ``train.lr``), and a budget it gives replaces the default budget::

    model: {base_model: builtin}
    adapter: {method: lora, r: 32}
    train: {seq_len: 512, lr: 2.0e-3}
    data: {sources: [...], eval: {...}}
    stages:
      - name: code
        data: {mixture: {code: 1.0}}
        train: {max_tokens: 400000}
      - name: code-and-language
        data: {mixture: {code: 0.8, general: 0.2}}
        train: {max_tokens: 200000}

``carry`` says how a stage takes the previous stage's adapter: ``merge`` (the default) trains on
the previous model with the adapter merged into its weights, exported beside that stage;
``stack`` keeps the base and merges the earlier adapters as it loads (W + ΔW1 + ΔW2, no merged
copy on disk). A stage after a full fine-tune starts from that model either way.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

from adapt.errors import AdaptError
from adapt.recipe.load import LoadedRecipe, apply_overrides, check_recipe_data, drop_other_budgets, read_recipe_data

_STAGE_KEYS = {"name", "carry"}
_BUDGET_KEYS = ("max_tokens", "max_steps", "epochs")


@dataclass
class Stage:
    name: str
    carry: str  # merge | stack
    data: dict  # the stage's recipe, defaults merged in, before the previous stage's output is set
    lines: dict[str, int]


@dataclass
class Pipeline:
    name: str
    path: Path
    defaults: dict
    stages: list[Stage]

    @property
    def run_dir(self) -> Path:
        return Path(self.defaults.get("train", {}).get("output_dir") or Path("runs") / self.name)

    def stage_dir(self, index: int) -> Path:
        return self.run_dir / f"{index}-{self.stages[index].name}"

    def loaded(self, index: int, model: dict | None = None) -> LoadedRecipe:
        """Stage ``index`` as a checked recipe, with ``model`` keys (where the previous stage's
        output is) over its model section, and its run directory inside the pipeline's."""
        stage = self.stages[index]
        data = copy.deepcopy(stage.data)
        if model is not None:
            data["model"] = {**data.get("model", {}), **model}
        data["name"] = f"{self.name}-{stage.name}"
        data.setdefault("train", {})["output_dir"] = str(self.stage_dir(index))
        tracking = data.setdefault("tracking", {})
        tracking["run_name"] = f"{tracking.get('run_name') or self.name}/{stage.name}"
        try:
            return check_recipe_data(data, self.path, stage.lines)
        except AdaptError as exc:
            raise AdaptError(f"stage {stage.name!r}: {exc.what}", file=exc.file, key=exc.key, line=exc.line,
                             fix=exc.fix) from None


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Pipeline | None:
    """The pipeline in ``path``, every stage checked against the base; None for a plain recipe.
    Overrides of ``stages.N....`` change that stage; the others change every stage (over what the
    stage itself gives) and the defaults."""
    path = Path(path)
    for_stages = [o for o in overrides if o.strip().startswith("stages.")]
    for_all = [o for o in overrides if o not in for_stages]
    data, lines = read_recipe_data(path, for_stages)
    if "stages" not in data:
        return None
    raw = data.pop("stages")
    apply_overrides(data, for_all, path)
    if not isinstance(raw, list) or not raw:
        raise AdaptError("stages must be a list of at least one stage", file=str(path), key="stages",
                         line=lines.get("stages"), fix="give e.g. `stages: [{name: cpt}, {name: sft, kind: sft}]`")
    name = data.get("name") or path.stem
    stages = [_stage(data, item, i, path, lines) for i, item in enumerate(raw)]
    for stage in stages:
        apply_overrides(stage.data, for_all, path)
    names = [s.name for s in stages]
    for i, stage_name in enumerate(names):
        if stage_name in names[:i]:
            raise AdaptError(f"stage name {stage_name!r} is used twice", file=str(path), key=f"stages.{i}.name",
                             line=lines.get(f"stages.{i}.name"), fix="give each stage its own name")
    pipeline = Pipeline(name, path, data, stages)
    for i in range(len(stages)):
        pipeline.loaded(i)  # each stage checked now, against the pipeline's base, before anything runs
    return pipeline


def _stage(defaults: dict, item, index: int, path: Path, lines: dict[str, int]) -> Stage:
    key = f"stages.{index}"
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
            not re.fullmatch(r"[A-Za-z0-9_.-]+", item["name"]):
        raise AdaptError("a stage is a mapping with a name (letters, digits, _ . -)", file=str(path), key=key,
                         line=lines.get(key), fix="e.g. `- {name: cpt, train: {max_tokens: 400000}}`")
    carry = item.get("carry", "merge")
    if carry not in ("merge", "stack"):
        raise AdaptError(f"carry must be merge or stack, not {carry!r}", file=str(path), key=f"{key}.carry",
                         line=lines.get(f"{key}.carry"), fix="merge: train on the merged model; stack: keep "
                                                              "the base and merge earlier adapters as it loads")
    if "plan" in item:
        raise AdaptError("stages take no plan section", file=str(path), key=f"{key}.plan",
                         fix="plan the mixture with a single-stage recipe, then use its plan file here")
    data = copy.deepcopy(defaults)
    for section, value in item.items():
        if section in _STAGE_KEYS:
            continue
        if isinstance(value, dict) and isinstance(data.get(section), dict):
            if section == "train" and any(k in value for k in _BUDGET_KEYS):
                drop_other_budgets(data["train"], next(k for k in _BUDGET_KEYS if k in value))
            data[section] = {**data[section], **copy.deepcopy(value)}
        else:
            data[section] = copy.deepcopy(value)
    stage_lines = {**lines, **{k[len(key) + 1:]: v for k, v in lines.items() if k.startswith(key + ".")}}
    return Stage(item["name"], carry, data, stage_lines)
