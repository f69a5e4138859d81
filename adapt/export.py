"""``adapt export RUN_DIR``: a finished run's adapter alone (PEFT format), or merged into its base
(``save_pretrained`` format, loadable with plain ``AutoModelForCausalLM``), with its tokenizer,
chat template and a model card written from the run.

A QLoRA adapter was trained against the 4-bit base, so it is merged into that base dequantised
(``dequantize()`` gives the exact weights the adapter saw), not into the original full-precision
weights: the merged model then computes what the trained model computed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from adapt.errors import AdaptError
from adapt.fileio import atomic_write


def export_run(run_dir: Path, output: Path | None = None, merged: bool = False) -> Path:
    """Write the export to ``output`` (default ``RUN_DIR/export-adapter`` or ``export-merged``),
    whole or not at all: it is built beside the target and renamed into place."""
    from adapt.recipe.schema import Recipe
    from adapt.train.run_state import load_state

    run_dir = Path(run_dir)
    state = load_state(run_dir)
    if state is None:
        raise AdaptError("not an adapt run directory (no run_state.json)", file=str(run_dir),
                         fix="give the train.output_dir of a run")
    final = run_dir / "final"
    if state.status != "finished" or not final.is_dir():
        raise AdaptError(f"the run is {state.status}, not finished", file=str(run_dir / "run_state.json"),
                         fix="finish it with `adapt train` on its recipe first")
    recipe = Recipe.model_validate(state.recipe)
    is_adapter = (final / "adapter_config.json").is_file()
    output = Path(output) if output else run_dir / ("export-merged" if merged and is_adapter else "export-adapter"
                                                    if is_adapter else "export-model")
    staging = output.with_name(output.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    if merged and is_adapter:
        _save_merged(run_dir, recipe, staging)
    else:
        shutil.copytree(final, staging)
    with atomic_write(staging / "README.md") as f:
        f.write(model_card(run_dir, recipe, merged=merged or not is_adapter))
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)
    return output


def _save_merged(run_dir: Path, recipe, target: Path) -> None:
    from adapt.model import load_tokenizer, load_trained

    tokenizer = load_tokenizer(str(run_dir / "final"), recipe.model.trust_remote_code)
    load_trained(run_dir, tokenizer, dequantized=True).merge_and_unload().save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))  # with the chat template, in tokenizer_config.json


def model_card(run_dir: Path, recipe, merged: bool) -> str:
    """The export's README.md: base model and recipe, data, evaluation, tracking."""
    base = recipe.model.base_model
    what = "merged into its base" if merged else "a PEFT adapter over its base"
    lines = ["---", f"base_model: {json.dumps(base)}", f"library_name: {'transformers' if merged else 'peft'}",
             f"tags: [adapt, {recipe.kind}, {recipe.adapter.method}]", "---", "",
             f"# {recipe.name}", "",
             f"Adapted from `{base}` by adapt ({recipe.kind}, {recipe.adapter.method}); "
             f"this export is {what}.", ""]
    if recipe.train.objective == "diffusion":
        lines += ["A masked-diffusion model: it attends bidirectionally and fills `"
                  f"{recipe.diffusion.mask_token}` tokens. After loading, call "
                  "`adapt.diffusion.attention.make_bidirectional(model)` (transformers resets each attention "
                  "layer's causal flag), and sample with `adapt.diffusion.sample.unmask`; `generate()` does "
                  "not apply.", ""]
    report = _json(run_dir / "data_report.json")
    if report:
        lines += ["## Data", "", "| source | train files | held-out files | tokens | share (target → realised) |",
                  "|---|---|---|---|---|"]
        mixture = report.get("mixture", {})
        for name, source in report.get("sources", {}).items():
            share = mixture.get(name)
            shares = f"{share['target']:.2f} → {share['realised']:.2f}" if share else "-"
            tokens = f"{source['tokens']:,}" if source.get("tokens") is not None else "-"
            lines.append(f"| {name} | {source['train_documents']} | {source['heldout_documents']} | {tokens} | {shares} |")
        curation = report.get("curation", {})
        licences = ", ".join(f"{k} ({v})" for k, v in curation.get("licences", {}).items()) or "none recorded"
        tokens = report.get("train_tokens")
        amount = f"{tokens:,} tokens" if tokens is not None else "rows (DPO and GRPO count rows, not tokens)"
        lines += ["", f"Trained on {amount} in {report.get('steps', 0)} steps. "
                      f"Licences of the curated files: {licences}. Every file seen is listed in "
                      "`data_manifest.jsonl` of the run.", ""]
    evaluation = run_dir / "eval" / "report.md"
    if evaluation.is_file():
        body = evaluation.read_text().split("\n", 1)[1].lstrip()  # without its own title
        lines += ["## Evaluation before and after", "", body.rstrip(), ""]
    tracking = _json(run_dir / "tracking_run.json")
    if tracking.get("run_id"):
        lines += ["## Tracking", "", f"MLflow run `{tracking['run_id']}` in `{tracking.get('tracking_uri')}`.", ""]
    lines += ["## Recipe", "", "```yaml", yaml.safe_dump(recipe.record(), sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
