"""Rows of instruction and preference datasets: read through `datasets`, renamed by the source's
``columns``, checked, normalised to trl's formats, and split into train and held-out rows.

trl reads two shapes: ``messages`` (a conversation) and ``prompt``/``completion`` (strings or
conversations); preference pairs add ``chosen``/``rejected``. Alpaca rows become conversations,
as LLaMA-Factory does. A bad row is an error naming the file, the row and the field, before
anything is trained.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapt.data.sources import DocRef, split_heldout
from adapt.errors import AdaptError
from adapt.recipe.load import LoadedRecipe
from adapt.recipe.stages import InstructionsSource, PreferencesSource

# format -> (required fields, optional fields)
FIELDS = {
    "messages": (("messages",), ()),
    "prompt_completion": (("prompt", "completion"), ()),
    "alpaca": (("instruction", "output"), ("input", "system")),
    "preferences": (("chosen", "rejected"), ("prompt",)),
}
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Rows:
    """One source's normalised rows, and the file or hub name they came from."""

    name: str
    format: str
    train: list[dict]
    heldout: list[dict]
    origin: str


def read_rows(loaded: LoadedRecipe, index: int) -> Rows:
    """The rows of ``data.sources.<index>`` (an instructions or preferences source)."""
    from adapt.data.datasets_source import load_table

    source = loaded.recipe.data.sources[index]
    key = f"data.sources.{index}"
    table = load_table(source, loaded.base_dir, loaded.error, key)
    origin = source.path or source.hub
    fmt = _format(loaded, source, table.column_names, key)
    required, optional = FIELDS[fmt]
    wanted = {f: source.columns.get(f, f) for f in required + optional}
    present = {f: col for f, col in wanted.items() if col in table.column_names}
    for field in required:
        if field not in present:
            raise loaded.error(
                f"dataset has no column {wanted[field]!r}, which the {fmt} format needs "
                f"(columns: {', '.join(table.column_names)})", f"{key}.columns",
                fix=f"map it, e.g. columns: {{{field}: <your column>}}, or set format")
    rows = []
    for i, raw in enumerate(table.select_columns(list(present.values()))):
        try:
            rows.append(_normalise({field: raw[col] for field, col in present.items()}, fmt, source))
        except RowError as exc:
            raise AdaptError(f"row {i + 1}: {exc.field!r} {exc.what}", file=origin,
                             key=wanted.get(exc.field.split("[")[0], exc.field), fix=exc.fix) from None
    if not rows:
        raise loaded.error(f"source {source.name!r} is empty", key, fix="check the split and the files")
    with_prompt = [i for i, row in enumerate(rows) if "prompt" in row]
    if fmt == "preferences" and 0 < len(with_prompt) < len(rows):
        missing = next(i for i, row in enumerate(rows) if "prompt" not in row)
        raise AdaptError(f"row {missing + 1} has no prompt, but row {with_prompt[0] + 1} has one", file=origin,
                         key=wanted["prompt"], fix="give every pair a prompt, or none (whole conversations)")
    refs = [DocRef(origin, i + 1) for i in range(len(rows))]
    train, heldout = split_heldout(refs, source.heldout)
    return Rows(source.name, fmt, [rows[r.line - 1] for r in train], [rows[r.line - 1] for r in heldout], origin)


def _format(loaded: LoadedRecipe, source, columns: list[str], key: str) -> str:
    if isinstance(source, PreferencesSource):
        return "preferences"
    if source.format != "auto":
        return source.format
    renamed = {field for field in _all_fields() if source.columns.get(field, field) in columns}
    for fmt in ("messages", "prompt_completion", "alpaca"):
        if set(FIELDS[fmt][0]) <= renamed:
            return fmt
    raise loaded.error(f"cannot tell the format of the rows (columns: {', '.join(columns)})", f"{key}.format",
                       fix="give messages, prompt + completion, or instruction + output columns, "
                           "or set format and map your columns with columns: {field: column}")


def _all_fields() -> set[str]:
    return {f for required, optional in FIELDS.values() for f in required + optional}


class RowError(ValueError):
    def __init__(self, field: str, what: str, fix: str):
        self.field, self.what, self.fix = field, what, fix
        super().__init__(f"{field}: {what}")


def _normalise(row: dict, fmt: str, source) -> dict:
    if fmt == "messages":
        return {"messages": _conversation(row["messages"], "messages", need_assistant=True)}
    if fmt == "alpaca":
        user = _text(row["instruction"], "instruction")
        if row.get("input"):
            user += "\n\n" + str(row["input"])
        system = row.get("system") or getattr(source, "system", None)
        messages = ([{"role": "system", "content": str(system)}] if system else [])
        return {"messages": messages + [{"role": "user", "content": user},
                                        {"role": "assistant", "content": _text(row["output"], "output")}]}
    out = {}
    for field in FIELDS[fmt][0] + FIELDS[fmt][1]:
        if field in row and (field != "prompt" or fmt != "preferences" or row[field] is not None):
            value = row[field]
            out[field] = (_conversation(value, field) if isinstance(value, list) else _text(value, field))
    return out


def _text(value, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RowError(field, "is empty or not text", "remove the row or fill in the field")
    return value


def _conversation(value, field: str, need_assistant: bool = False) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RowError(field, "is empty or not a list of messages", "give a non-empty list of {role, content} messages")
    for j, message in enumerate(value):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise RowError(f"{field}[{j}]", f"is not a message with a role ({', '.join(ROLES)}) and text content",
                           "write messages as {role: user, content: ...}")
    if need_assistant and not any(m["role"] == "assistant" for m in value):
        raise RowError(field, "has no assistant message to learn from", "add the assistant's reply, or remove the row")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def instruction_sources(loaded: LoadedRecipe) -> list[int]:
    return [i for i, s in enumerate(loaded.recipe.data.sources) if isinstance(s, InstructionsSource)]


def rows_report(rows: Rows, steps: int, eval_sets: dict[str, int]) -> dict:
    """The data report of a stage trained on one row source (DPO, GRPO): rows, not tokens."""
    return {
        "steps": steps,
        "train_tokens": None,
        "packing": {"mode": "none (one row per example)", "efficiency": None, "truncated_tokens": 0},
        "sources": {rows.name: {"train_documents": len(rows.train), "heldout_documents": len(rows.heldout),
                                "format": rows.format, "tokens": None, "revision": None, "licence": None}},
        "mixture": {rows.name: {"target": 1.0, "realised": 1.0, "tokens_fed": None, "repetition": 1.0}},
        "eval": {name: {"tokens": None, "examples": n} for name, n in eval_sets.items()},
    }
