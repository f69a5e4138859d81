"""Sources: turn each recipe source into documents, split into train and held-out by whole file.

A document is one file (or one jsonl record). Files are listed in sorted order, so the same
recipe on the same files always yields the same documents and the same split. Listing already
applies the path filters (vendored trees, lock files, languages, size), so a 100 MB file or a
``node_modules`` tree is never read; what they drop is kept in ``dropped`` for the manifest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from adapt.data import git
from adapt.errors import AdaptError
from adapt.recipe.load import LoadedRecipe, find_paths
from adapt.recipe.schema import BuiltinCorpusSource, DatasetSource, FilesSource, GitSource, HeldOut, JsonlSource


@dataclass(frozen=True)
class DocRef:
    """Where a document comes from: a file (relative to its source's root), or one line of a
    jsonl file (``line`` >= 1)."""

    path: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass
class ResolvedSource:
    """A source's documents, split by whole document into train and held-out."""

    name: str
    kind: str
    root: Path
    train: list[DocRef]
    heldout: list[DocRef]
    text_field: str | None = None
    revision: str | None = None  # git: the commit the files were read at
    licence: str | None = None  # the source's default: the recipe's, or its root's LICENSE
    curated: bool = True  # the built-in corpus is adapt's own and fixed, so it is not curated
    sizes: dict[str, int] = field(default_factory=dict)  # bytes per path, where the listing knows them
    table: object | None = None  # a `datasets.Dataset`, for dataset sources (rows are ``line - 1``)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) by the listing

    def read(self, refs: list[DocRef]) -> Iterator[tuple[DocRef, str | None, str | None]]:
        """Yield (ref, text, None) for each readable document, (ref, None, reason) for the others."""
        if self.kind == "git":
            for path, raw in git.read_blobs(self.root, self.revision, [r.path for r in refs]):
                yield DocRef(path), *decode_text(raw)
        elif self.table is not None:
            for start in range(0, len(refs), 256):
                chunk = refs[start: start + 256]
                texts = self.table.select([r.line - 1 for r in chunk])[self.text_field]
                for ref, text in zip(chunk, texts):
                    yield ref, (str(text) if text else None), (None if text else "empty")
        elif self.text_field is not None:
            for path, group in _group_by_path(refs):
                wanted = {r.line for r in group}
                for line_no, record in _jsonl_records(self.root / path, self.text_field):
                    if line_no in wanted:
                        yield DocRef(path, line_no), (record or None), (None if record else "empty")
        else:
            for ref in refs:
                yield ref, *read_text_file(self.root / ref.path)


def read_text_file(path: Path) -> tuple[str | None, str | None]:
    """(text, None), or (None, reason) if the file is unreadable, binary, not UTF-8 or empty."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None, "unreadable"
    return decode_text(raw)


def decode_text(raw: bytes) -> tuple[str | None, str | None]:
    if b"\0" in raw[:8192]:
        return None, "binary"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not_utf8"
    return (text, None) if text else (None, "empty")


def resolve_sources(loaded: LoadedRecipe) -> dict[str, ResolvedSource]:
    """Find every source's documents; errors name the recipe key of the source at fault."""
    resolved = {}
    for i, source in enumerate(loaded.recipe.data.sources):
        key = f"data.sources.{i}"
        if isinstance(source, (FilesSource, GitSource)):
            resolved[source.name] = _resolve_tree(loaded, source, key)
        elif isinstance(source, JsonlSource):
            resolved[source.name] = _resolve_jsonl(loaded, source, key)
        elif isinstance(source, DatasetSource):
            resolved[source.name] = _resolve_dataset(loaded, source, key)
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


def glob_matcher(patterns: list[str]):
    """A matcher for POSIX relative paths: ``*`` stays within a folder, ``**/`` spans any number."""
    regex = "|".join(_glob_regex(p) for p in patterns)
    return re.compile(f"(?:{regex})\\Z").match


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        char, close = pattern[i], pattern.find("]", i + 2)
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "[" and close != -1:
            body = pattern[i + 1: close].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = close + 1
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------- kinds


def _resolve_tree(loaded: LoadedRecipe, source: FilesSource | GitSource, key: str) -> ResolvedSource:
    """Files of a directory or a git revision, through the include/exclude globs and path filters."""
    from adapt.data.curation.filters import path_verdict
    from adapt.data.curation.licences import repo_licence

    spec = filter_spec(loaded)
    include, exclude = glob_matcher(source.include), glob_matcher(source.exclude or ["\0"])
    if isinstance(source, GitSource):
        root = loaded.resolve_path(source.repo)
        revision, listing = git.list_files(root, source.revision, loaded.error, f"{key}.repo")
        licence = source.licence or git.licence_at(root, revision)
    else:
        root, revision = _files_root(loaded, source, key), None
        listing = _walk(root)
        licence = source.licence or repo_licence(root)
    matched, kept, dropped, sizes = 0, [], [], {}
    for rel, size in listing:
        if not include(rel) or exclude(rel):
            continue
        matched += 1
        reason = "too_large" if size > spec.max_file_bytes else "empty" if size == 0 else path_verdict(Path(rel), spec)
        if reason:
            dropped.append((rel, reason))
        else:
            kept.append(DocRef(rel))
            sizes[rel] = size
    if not matched:
        raise loaded.error(f"no file under {root} matches {source.include}", f"{key}.include",
                           fix="check the globs; '**/*.c' matches .c files in all folders")
    if not kept:
        reasons = sorted({r for _, r in dropped})
        raise loaded.error(f"source {source.name!r} is empty: all {matched} matched files were dropped "
                           f"({', '.join(reasons)})", f"{key}.include",
                           fix="include non-empty text files, or relax data.curation.filters")
    train, heldout = split_heldout(kept, source.heldout)
    return ResolvedSource(source.name, source.kind, root, train, heldout, revision=revision,
                          licence=licence, dropped=dropped, sizes=sizes)


def filter_spec(loaded: LoadedRecipe):
    from adapt.data.curation.filters import FilterSpec

    try:
        return FilterSpec(**loaded.recipe.data.curation.filters.model_dump())
    except ValueError as exc:
        raise loaded.error(str(exc), "data.curation.filters.languages") from None


def _walk(root: Path) -> list[tuple[str, int]]:
    """(relative POSIX path, size) of every regular file; symlinks to folders are not followed,
    so a symlink loop cannot hang the listing."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            try:
                if path.is_file():
                    found.append((path.relative_to(root).as_posix(), path.stat().st_size))
            except OSError:  # a dangling symlink or a file removed meanwhile
                continue
    return found


def _files_root(loaded: LoadedRecipe, source: FilesSource, key: str) -> Path:
    if source.package:
        spec = importlib.util.find_spec(source.package)
        if spec is None:
            raise loaded.error(f"Python package {source.package!r} is not installed", f"{key}.package",
                               fix="install it, or point root: at a directory")
        locations = list(spec.submodule_search_locations or [Path(spec.origin).parent])
        return Path(locations[0])
    root = loaded.resolve_path(source.root or ".")
    if not root.is_dir():
        raise loaded.error(f"directory {root} does not exist", f"{key}.root",
                           fix="give an existing directory (relative paths start at the recipe's folder)")
    return root


def _resolve_jsonl(loaded: LoadedRecipe, source: JsonlSource, key: str) -> ResolvedSource:
    paths: list[Path] = []
    for i, pattern in enumerate(source.paths):
        found = [p for p in find_paths(loaded.base_dir, pattern) if p.is_file()]
        if not found:
            raise loaded.error(f"{pattern!r} matches no file (looked in {loaded.base_dir})", f"{key}.paths.{i}",
                               fix="give an existing jsonl file or a glob relative to the recipe")
        paths.extend(found)
    refs = [DocRef(str(path), line) for path in paths for line, _ in _jsonl_records(path, source.text_field)]
    if not refs:
        raise loaded.error(f"source {source.name!r} has no records with a {source.text_field!r} field",
                           f"{key}.paths", fix="check the files, or set text_field")
    train, heldout = split_heldout(refs, source.heldout)
    return ResolvedSource(source.name, source.kind, Path("/"), train, heldout, text_field=source.text_field)


def _resolve_dataset(loaded: LoadedRecipe, source: DatasetSource, key: str) -> ResolvedSource:
    from adapt.data.datasets_source import load_rows

    table = load_rows(source, loaded.base_dir, loaded.error, key)
    if len(table) == 0:
        raise loaded.error(f"source {source.name!r} is empty", key, fix="check the split and the files")
    refs = [DocRef(source.path or source.hub, row + 1) for row in range(len(table))]
    train, heldout = split_heldout(refs, source.heldout)
    return ResolvedSource(source.name, source.kind, loaded.base_dir, train, heldout, text_field=source.text_field,
                          table=table)


def json_lines(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, record) of each non-blank line; a line that is not JSON is an error naming it."""
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise AdaptError(f"line is not JSON ({exc.msg})", file=str(path), line=line_no,
                                 fix="fix or remove that line") from None


def _jsonl_records(path: Path, text_field: str) -> Iterator[tuple[int, str]]:
    for line_no, record in json_lines(path):
        if not isinstance(record, dict) or text_field not in record:
            raise AdaptError(f"record has no {text_field!r} field", file=str(path), line=line_no,
                             fix="set text_field in the source to the field holding the text")
        yield line_no, str(record[text_field])


def _resolve_builtin(loaded: LoadedRecipe, source: BuiltinCorpusSource, key: str) -> ResolvedSource:
    if not loaded.recipe.model.builtin_family:
        raise loaded.error("builtin_corpus needs the built-in base model", f"{key}.kind",
                           fix="set model.base_model: builtin, or use a files source for replay")
    return builtin_corpus(loaded, source.name)


def builtin_corpus(loaded: LoadedRecipe, name: str) -> ResolvedSource:
    """The built-in base model's pretraining corpus, split as it was pretrained."""
    from adapt.builtin import corpus_split

    train, heldout = corpus_split(loaded.recipe.model.builtin)
    return ResolvedSource(name, "builtin_corpus", Path("/"), [DocRef(str(p)) for p in train],
                          [DocRef(str(p)) for p in heldout], curated=False)


def _group_by_path(refs: list[DocRef]) -> Iterator[tuple[str, list[DocRef]]]:
    by_path: dict[str, list[DocRef]] = {}
    for ref in refs:
        by_path.setdefault(ref.path, []).append(ref)
    yield from by_path.items()
