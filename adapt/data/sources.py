"""Sources: turn each recipe source into documents, split into train and held-out by whole file.

A document is one file (or one jsonl record). Files are read lazily, in sorted order, so the
same recipe on the same files always yields the same documents and the same split.
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from adapt.errors import AdaptError
from adapt.recipe.load import LoadedRecipe
from adapt.recipe.schema import BuiltinCorpusSource, FilesSource, HeldOut, JsonlSource


@dataclass(frozen=True)
class DocRef:
    """Where a document comes from: a file, or one line of a jsonl file (``line`` >= 1)."""

    path: Path
    line: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)


@dataclass
class ResolvedSource:
    """A source's documents, split by whole document into train and held-out, with skip counts."""

    name: str
    train: list[DocRef]
    heldout: list[DocRef]
    text_field: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)

    def read(self, refs: list[DocRef]) -> Iterator[tuple[DocRef, str]]:
        """Yield (ref, text) for each readable, non-empty document; unreadable ones are counted."""
        if self.text_field is None:
            for ref in refs:
                text = read_text_file(ref.path, self.skipped)
                if text:
                    yield ref, text
            return
        for path, group in _group_by_path(refs):
            wanted = {r.line for r in group}
            for line_no, record in _jsonl_records(path, self.text_field):
                if line_no in wanted and record:
                    yield DocRef(path, line_no), record


def read_text_file(path: Path, skipped: dict[str, int]) -> str | None:
    """The file's text, or None (counted in ``skipped``) if it is unreadable, binary or not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError:
        skipped["unreadable"] = skipped.get("unreadable", 0) + 1
        return None
    if b"\0" in raw[:8192]:
        skipped["binary"] = skipped.get("binary", 0) + 1
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        skipped["not_utf8"] = skipped.get("not_utf8", 0) + 1
        return None


def resolve_sources(loaded: LoadedRecipe) -> dict[str, ResolvedSource]:
    """Find every source's documents; errors name the recipe key of the source at fault."""
    resolved = {}
    for i, source in enumerate(loaded.recipe.data.sources):
        key = f"data.sources.{i}"
        if isinstance(source, FilesSource):
            resolved[source.name] = _resolve_files(loaded, source, key)
        elif isinstance(source, JsonlSource):
            resolved[source.name] = _resolve_jsonl(loaded, source, key)
        elif isinstance(source, BuiltinCorpusSource):
            resolved[source.name] = _resolve_builtin(loaded, source, key)
    return resolved


def split_heldout(refs: list[DocRef], heldout: HeldOut) -> tuple[list[DocRef], list[DocRef]]:
    """Hold out whole documents with a fixed seed; always leave at least one for training."""
    if len(refs) < 2 or heldout.fraction == 0:
        return list(refs), []
    count = max(heldout.min_files, round(heldout.fraction * len(refs)))
    if heldout.max_files is not None:
        count = min(count, heldout.max_files)
    count = min(count, len(refs) - 1)
    chosen = set(random.Random(heldout.seed).sample(range(len(refs)), count))
    train = [r for i, r in enumerate(refs) if i not in chosen]
    return train, [r for i, r in enumerate(refs) if i in chosen]


# --------------------------------------------------------------------------- kinds


def _resolve_files(loaded: LoadedRecipe, source: FilesSource, key: str) -> ResolvedSource:
    root = _files_root(loaded, source, key)
    matched: set[Path] = set()
    for pattern in source.include:
        matched.update(p for p in root.glob(pattern) if p.is_file())
    excluded = {p for pattern in source.exclude for p in root.glob(pattern)}
    skipped: dict[str, int] = {}
    files = []
    for path in sorted(matched - excluded):
        if path.stat().st_size > source.max_file_bytes:
            skipped["too_large"] = skipped.get("too_large", 0) + 1
        elif path.stat().st_size == 0:
            skipped["empty"] = skipped.get("empty", 0) + 1
        else:
            files.append(DocRef(path))
    if not matched:
        raise loaded.error(f"no file under {root} matches {source.include}", f"{key}.include",
                           fix="check the globs; '**/*.c' matches .c files in all subdirectories")
    if not files:
        raise loaded.error(f"source {source.name!r} is empty: all {len(matched)} matched files were skipped "
                           f"({_counts(skipped)})", f"{key}.include",
                           fix="include non-empty text files, or raise max_file_bytes")
    train, heldout = split_heldout(files, source.heldout)
    return ResolvedSource(source.name, train, heldout, skipped=skipped)


def _files_root(loaded: LoadedRecipe, source: FilesSource, key: str) -> Path:
    if source.package:
        spec = importlib.util.find_spec(source.package)
        if spec is None:
            raise loaded.error(f"Python package {source.package!r} is not installed", f"{key}.package",
                               fix="install it, or point root: at a directory")
        locations = list(spec.submodule_search_locations or [Path(spec.origin).parent])
        return Path(locations[0])
    root = Path(source.root or ".").expanduser()
    root = root if root.is_absolute() else loaded.base_dir / root
    if not root.is_dir():
        raise loaded.error(f"directory {root} does not exist", f"{key}.root",
                           fix="give an existing directory (relative paths start at the recipe's folder)")
    return root


def _resolve_jsonl(loaded: LoadedRecipe, source: JsonlSource, key: str) -> ResolvedSource:
    paths: list[Path] = []
    for i, pattern in enumerate(source.paths):
        direct = Path(pattern).expanduser()
        direct = direct if direct.is_absolute() else loaded.base_dir / direct
        found = sorted(p for p in loaded.base_dir.glob(pattern) if p.is_file()) if not direct.exists() else [direct]
        if not found:
            raise loaded.error(f"{pattern!r} matches no file (looked in {loaded.base_dir})", f"{key}.paths.{i}",
                               fix="give an existing jsonl file or a glob relative to the recipe")
        paths.extend(found)
    refs = [DocRef(path, line) for path in paths for line, _ in _jsonl_records(path, source.text_field)]
    if not refs:
        raise loaded.error(f"source {source.name!r} has no records with a {source.text_field!r} field",
                           f"{key}.paths", fix="check the files, or set text_field")
    train, heldout = split_heldout(refs, source.heldout)
    return ResolvedSource(source.name, train, heldout, text_field=source.text_field)


def _jsonl_records(path: Path, text_field: str) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AdaptError(f"line is not JSON ({exc.msg})", file=str(path), line=line_no,
                                 fix="fix or remove that line") from None
            if not isinstance(record, dict) or text_field not in record:
                raise AdaptError(f"record has no {text_field!r} field", file=str(path), line=line_no,
                                 fix="set text_field in the source to the field holding the text")
            yield line_no, str(record[text_field])


def _resolve_builtin(loaded: LoadedRecipe, source: BuiltinCorpusSource, key: str) -> ResolvedSource:
    from adapt.builtin import corpus_split

    if not loaded.recipe.model.is_builtin:
        raise loaded.error("builtin_corpus needs the built-in base model", f"{key}.kind",
                           fix="set model.base_model: builtin, or use a files source for replay")
    train, heldout = corpus_split(loaded.recipe.model.builtin)
    return ResolvedSource(source.name, [DocRef(p) for p in train], [DocRef(p) for p in heldout])


def _group_by_path(refs: list[DocRef]) -> Iterator[tuple[Path, list[DocRef]]]:
    by_path: dict[Path, list[DocRef]] = {}
    for ref in refs:
        by_path.setdefault(ref.path, []).append(ref)
    yield from by_path.items()


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
