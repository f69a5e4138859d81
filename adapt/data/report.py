"""Write what the data stage did: ``data_report.json``, a readable ``data_report.md``, and
``data_manifest.jsonl`` with one row per file seen (kept, or the reason it was dropped)."""

from __future__ import annotations

import json
from pathlib import Path

from adapt.fileio import atomic_write, write_json

REPORT_JSON, REPORT_MD, MANIFEST = "data_report.json", "data_report.md", "data_manifest.jsonl"
DATA_OUTPUTS = (REPORT_JSON, REPORT_MD, MANIFEST)


def write_data_outputs(directory: Path, report: dict, manifest: list[dict]) -> list[Path]:
    write_json(directory / REPORT_JSON, report)
    with atomic_write(directory / REPORT_MD) as f:
        f.write(markdown(report))
    with atomic_write(directory / MANIFEST) as f:
        for row in manifest:
            f.write(json.dumps(row) + "\n")
    return [directory / REPORT_JSON, directory / REPORT_MD, directory / MANIFEST]


def markdown(report: dict) -> str:
    curation = report.get("curation", {})
    efficiency = report["packing"]["efficiency"]
    efficiency = f"{efficiency:.1%}" if efficiency is not None else f"set by {report['packing']['mode']}"
    tokens = f"{report['train_tokens']:,} training tokens" if report["train_tokens"] is not None else "Training rows"
    steps = f" in {report['steps']:,} steps" if report["steps"] else ""
    lines = ["# Data report", "", f"{tokens}{steps}; "
             f"packing efficiency {efficiency}, {report['packing']['truncated_tokens']} tokens truncated.", "",
             "## Sources", "", "| source | train files | held-out files | tokens | dropped |", "|---|---|---|---|---|"]
    for name, src in report["sources"].items():
        dropped = curation.get("dropped", {}).get(name, {})
        dropped_text = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "none"
        tokens = f"{src['tokens']:,}" if src["tokens"] is not None else "rows" if "format" in src else "(eval only)"
        lines.append(f"| {name} | {src['train_documents']} | {src['heldout_documents']} | {tokens} | {dropped_text} |")
    lines += ["", "## Mixture", "", "| source | target | realised | repetition |", "|---|---|---|---|"]
    for name, mix in report["mixture"].items():
        lines.append(f"| {name} | {mix['target']:.3f} | {mix['realised']:.3f} | {mix['repetition']:.2f} |")
    fim = report.get("fim", {})
    if fim.get("documents"):
        lines += ["", f"FIM: {fim['documents']} documents, realised rate {fim['realised_rate']:.3f} "
                      f"(PSM {fim.get('psm', 0)}, SPM {fim.get('spm', 0)})."]
    secrets = curation.get("secrets", {})
    lines += ["", "## Secrets", ""]
    if secrets.get("by_kind"):
        lines += [f"- {kind}: {n}" for kind, n in sorted(secrets["by_kind"].items())]
        lines += ["", "Files: " + ", ".join(f"{path} ({', '.join(kinds)})" for path, kinds in secrets["files"].items())]
    else:
        lines.append("None found.")
    for title, key in (("Licences", "licences"), ("Languages", "languages")):
        counts = curation.get(key, {})
        lines += ["", f"## {title}", ""] + [f"- {k}: {v}" for k, v in counts.items()]
    lines += ["", "## Eval sets", ""] + [f"- {n}: {e['tokens']:,} tokens" if e["tokens"] is not None
                                         else f"- {n}: {e['examples']} rows" for n, e in report["eval"].items()]
    return "\n".join(lines) + "\n"
