"""Before and after: loss changes per set, the forgetting verdict, and the report's JSON, markdown
and MLflow metrics; and ``adapt compare``'s side-by-side table of several runs' reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

from adapt.errors import AdaptError

REPORT_JSON, REPORT_MD, TRACE_PNG = "report.json", "report.md", "trace.png"


def build_report(before: dict, after: dict, epsilon: float, tolerance: str, **about) -> dict:
    """Each set's loss change, absolute and relative; general sets are held to ``epsilon``
    (nats if ``tolerance`` is absolute, a share of the base loss if relative)."""
    changes, verdicts = {}, {}
    for name, now in after["sets"].items():
        base = before["sets"][name]
        delta = now["loss"] - base["loss"]
        changes[name] = {"role": now["role"], "loss_before": base["loss"], "loss_after": now["loss"],
                         "delta": delta, "relative": delta / base["loss"], "ppl_before": base["ppl"],
                         "ppl_after": now["ppl"]}
        if now["role"] == "general":
            rise = delta if tolerance == "absolute" else delta / base["loss"]
            verdicts[name] = {"rise": rise, "pass": rise <= epsilon}
    forgetting = {"epsilon": epsilon, "tolerance": tolerance, "sets": verdicts,
                  "pass": all(v["pass"] for v in verdicts.values()) if verdicts else None}
    return {**about, "changes": changes, "forgetting": forgetting, "before": before, "after": after}


def report_metrics(report: dict) -> dict[str, float]:
    """The report as flat MLflow metrics under ``report/``."""
    metrics = {}
    for name, change in report["changes"].items():
        for key in ("loss_before", "loss_after", "delta", "relative", "ppl_before", "ppl_after"):
            metrics[f"report/{name}/{key}"] = change[key]
    for name, entry in report["after"]["sets"].items():
        for category, values in entry["categories"].items():
            metrics[f"report/{name}/category/{category}/loss"] = values["loss"]
        for key, value in entry.get("completion", {}).items():
            if key != "categories":
                metrics[f"report/{name}/completion/{key}"] = value
        for kind, values in entry.get("infill", {}).items():
            metrics[f"report/{name}/infill/{kind}/exact_match"] = values["exact_match"]
    for key, value in report["after"].get("pass_at_k", {}).items():
        if isinstance(value, (int, float)):
            metrics[f"report/pass_at_k/{key}"] = value
    if report["forgetting"]["pass"] is not None:
        metrics["report/forgetting_pass"] = float(report["forgetting"]["pass"])
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def forgetting_line(report: dict) -> str:
    forgetting = report["forgetting"]
    if forgetting["pass"] is None:
        return "forgetting: not measured (no general eval set; see evaluation.general)"
    relative = forgetting["tolerance"] == "relative"
    rises = ", ".join(f"{name} {v['rise']:+.2%}" if relative else f"{name} {v['rise']:+.4f} nats"
                      for name, v in forgetting["sets"].items())
    epsilon = f"{forgetting['epsilon']:.2%} of the base loss" if relative else f"{forgetting['epsilon']:g} nats"
    return f"forgetting: {'PASS' if forgetting['pass'] else 'FAIL'}: loss rise {rises} (tolerance ε = {epsilon})"


def loss_table(report: dict) -> str:
    """Each set's loss before and after, as the end of a run prints it."""
    lines = [f"{'eval set':<16}{'role':<9}{'loss before':>12}{'loss after':>12}{'change':>9}{'change %':>10}"
             f"{'ppl before':>12}{'ppl after':>11}"]
    lines += [f"{name:<16}{c['role']:<9}{c['loss_before']:>12.4f}{c['loss_after']:>12.4f}{c['delta']:>+9.4f}"
              f"{c['relative']:>+10.1%}{c['ppl_before']:>12.2f}{c['ppl_after']:>11.2f}"
              for name, c in report["changes"].items()]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    lines = [f"# Evaluation of {report.get('model', '?')}", "", f"Base: {report.get('base_model', '?')}", "",
             "| eval set | role | loss before | loss after | change | change % | ppl before | ppl after |",
             "|---|---|---|---|---|---|---|---|"]
    for name, c in report["changes"].items():
        lines.append(f"| {name} | {c['role']} | {c['loss_before']:.4f} | {c['loss_after']:.4f} | {c['delta']:+.4f} "
                     f"| {c['relative']:+.1%} | {c['ppl_before']:.2f} | {c['ppl_after']:.2f} |")
    lines += ["", f"**{forgetting_line(report)}**"]
    before, after = report["before"]["sets"], report["after"]["sets"]
    rows = [(name, kind, b.get(kind), a.get(kind)) for name, a in after.items() for b in [before[name]]
            for kind in ("completion", "infill") if a.get(kind)]
    if any(kind == "completion" for _, kind, _, _ in rows):
        lines += ["", "| completion | samples | token acc before | after | line EM before | after "
                      "| edit sim before | after |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {a['samples']} | {b.get('token_accuracy', 0):.3f} | {a.get('token_accuracy', 0):.3f} "
                  f"| {b.get('line_exact_match', 0):.3f} | {a.get('line_exact_match', 0):.3f} "
                  f"| {b.get('edit_similarity', 0):.3f} | {a.get('edit_similarity', 0):.3f} |"
                  for name, kind, b, a in rows if kind == "completion" and a.get("samples")]
    if any(kind == "infill" for _, kind, _, _ in rows):
        lines += ["", "| infill (exact match) | span/order | samples | before | after |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {order} | {v['samples']} | {b.get(order, {}).get('exact_match', 0):.3f} "
                  f"| {v['exact_match']:.3f} |"
                  for name, kind, b, a in rows if kind == "infill" for order, v in a.items()]
    lines += _category_lines(before, after)
    if "pass_at_k" in report["after"]:
        a, b = report["after"]["pass_at_k"], report["before"].get("pass_at_k", {})
        ks = [key for key in a if key.startswith("pass@")]
        lines += ["", f"| execution ({a['tasks']} tasks, n = {a['samples']}) | before | after |", "|---|---|---|"]
        lines += [f"| {k} | {b.get(k, 0):.3f} | {a[k]:.3f} |" for k in ks]
    return "\n".join(lines) + "\n"


def _category_lines(before: dict, after: dict) -> list[str]:
    """Per category of the sets split into several (evaluation.group_by): perplexity and
    completion token accuracy, before and after."""
    lines = []
    for name, a in after.items():
        if len(a["categories"]) < 2:
            continue
        b = before[name]
        completion_a = a.get("completion", {}).get("categories", {})
        completion_b = b.get("completion", {}).get("categories", {})
        lines += ["", f"| {name}: category | tokens | ppl before | ppl after | token acc before | after |",
                  "|---|---|---|---|---|---|"]
        for category, values in a["categories"].items():
            acc_b = completion_b.get(category, {}).get("token_accuracy")
            acc_a = completion_a.get(category, {}).get("token_accuracy")
            lines.append(f"| {category} | {values['tokens']} | {b['categories'][category]['ppl']:.2f} "
                         f"| {values['ppl']:.2f} | {_number(acc_b)} | {_number(acc_a)} |")
    return lines


def read_report(run: str) -> dict:
    """A run's (or an ``adapt eval`` output directory's) report."""
    path = Path(run)
    for candidate in (path / "eval" / REPORT_JSON, path / REPORT_JSON, path):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise AdaptError(f"cannot read the report: {exc}", file=str(candidate),
                                 fix=f"run `adapt eval {run} RECIPE.yaml` again to rewrite it") from None
    raise AdaptError("no evaluation report found", file=str(path / "eval" / REPORT_JSON),
                     fix=f"finish the run, or run `adapt eval {run} RECIPE.yaml`")


def compare_table(names: list[str], reports: list[dict]) -> str:
    """One column per run: the mixture, each set's loss after and change, the verdict, and the
    generation metrics the reports share."""
    rows: list[tuple[str, list[str]]] = [("mixture", [_mixture(r) for r in reports])]
    sets = [s for s in reports[0]["changes"] if all(s in r["changes"] for r in reports)]
    for s in sets:
        rows.append((f"{s} loss", [f"{r['changes'][s]['loss_after']:.4f}" for r in reports]))
        rows.append((f"{s} change", [f"{r['changes'][s]['delta']:+.4f} ({r['changes'][s]['relative']:+.1%})"
                                     for r in reports]))
        for metric in ("token_accuracy", "line_exact_match"):
            values = [r["after"]["sets"][s].get("completion", {}).get(metric) for r in reports]
            if any(v is not None for v in values):
                rows.append((f"{s} {metric}", [_number(v) for v in values]))
    rows.append(("forgetting", [{True: "PASS", False: "FAIL", None: "-"}[r["forgetting"]["pass"]] for r in reports]))
    for k in sorted({k for r in reports for k in r["after"].get("pass_at_k", {}) if k.startswith("pass@")}):
        rows.append((k, [_number(r["after"].get("pass_at_k", {}).get(k)) for r in reports]))
    width = max(len(label) for label, _ in rows) + 2
    columns = [max(len(n), *(len(values[i]) for _, values in rows)) + 2 for i, n in enumerate(names)]
    out = ["".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, columns))]
    out += [label.ljust(width) + "".join(v.rjust(c) for v, c in zip(values, columns)) for label, values in rows]
    return "\n".join(out)


def _mixture(report: dict) -> str:
    mixture = report.get("mixture") or {}
    return " ".join(f"{name}={share:g}" for name, share in mixture.items()) or "-"


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"
