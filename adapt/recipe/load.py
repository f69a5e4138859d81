"""YAML recipe + ``key.path=value`` overrides -> a checked, typed ``Recipe``.

Every problem becomes one ``AdaptError`` naming the file, the key, its line and the fix.
YAML is read with PyYAML's safe loader only, so a tag such as ``!!python/object`` is refused.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from adapt.errors import AdaptError
from adapt.recipe.kind_checks import check_evaluation_sets, check_objective, check_stage_sources
from adapt.recipe.schema import MixtureFile, Recipe

_BUDGETS = {"train.max_tokens", "train.max_steps", "train.epochs"}
# Keys whose values are free-form maps: an override may add a new key under them.
_OPEN_MAPS = {"mixture", "eval", "trainer_args", "columns"}


@dataclass
class LoadedRecipe:
    """A recipe with where it came from: its file, and the line of each key for error messages."""

    recipe: Recipe
    path: Path
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve_path(self, value: str) -> Path:
        """A path from the recipe: ``~`` expanded, relative paths taken from the recipe's folder."""
        return resolve_path(self.base_dir, value)

    def error(self, what: str, key: str, fix: str | None = None) -> AdaptError:
        return AdaptError(what, file=str(self.path), key=key, line=self.line_of(key), fix=fix)

    def line_of(self, key: str) -> int | None:
        return line_of(self.lines, key)


def resolve_path(base_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def find_paths(base_dir: Path, pattern: str) -> list[Path]:
    """What a recipe's path names: the file or folder itself, else what it matches as a glob
    (relative to ``base_dir``), sorted."""
    direct = resolve_path(base_dir, pattern)
    if direct.exists():
        return [direct]
    return [] if Path(pattern).expanduser().is_absolute() else sorted(base_dir.glob(pattern))


def line_of(lines: dict[str, int], key: str) -> int | None:
    """The line of ``key``, or of the nearest enclosing key that is in the file."""
    parts = key.split(".")
    while parts:
        if ".".join(parts) in lines:
            return lines[".".join(parts)]
        parts.pop()
    return None


# --------------------------------------------------------------------------- YAML


def read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse ``path`` safely; return the data and a map from dotted key to 1-based line."""
    if not path.is_file():
        raise AdaptError("file not found", file=str(path), fix="check the path to the YAML file")
    text = path.read_text(encoding="utf-8", errors="replace")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise AdaptError(
            f"YAML tag not allowed: {exc.problem}", file=str(path), line=line,
            fix="recipes are plain data: remove the tag (adapt reads YAML with safe_load only)",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise AdaptError(
            f"invalid YAML: {getattr(exc, 'problem', None) or exc}", file=str(path),
            line=mark.line + 1 if mark else None, fix="fix the YAML syntax at that line",
        ) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    if node is not None:
        _index_lines(node, "", lines, path)
    return data, lines


def _index_lines(node: yaml.Node, prefix: str, lines: dict[str, int], path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            if key_node.value in seen:  # safe_load would silently keep the last one
                raise AdaptError("key given twice", file=str(path), key=key,
                                 line=key_node.start_mark.line + 1, fix="keep one of them")
            seen.add(key_node.value)
            lines[key] = key_node.start_mark.line + 1
            _index_lines(value_node, f"{key}.", lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[f"{prefix}{i}"] = item.start_mark.line + 1
            _index_lines(item, f"{prefix}{i}.", lines, path)


# --------------------------------------------------------------------------- overrides


def apply_override(data: dict, override: str, path: Path) -> None:
    """Set ``a.b.c=value`` in ``data``; the value is parsed as YAML (``2`` is an int)."""
    if "=" not in override:
        raise AdaptError(f"override {override!r} is not key.path=value", file=str(path),
                         fix="write overrides as e.g. train.max_steps=100")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    _check_override_path(parts, path)
    target: Any = data
    try:
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if isinstance(target, list):
            target[int(parts[-1])] = value
        else:
            target[parts[-1]] = value
    except (IndexError, ValueError, AttributeError, TypeError):
        raise AdaptError("override path does not exist in the recipe", file=str(path), key=key.strip(),
                         fix="list items are numbered from 0, e.g. data.sources.0.include=['*.c']") from None


def _check_override_path(parts: list[str], path: Path) -> None:
    if parts[0] == "stages" and len(parts) > 2 and parts[1].isdigit():  # a pipeline's stage: a recipe
        if parts[2] in ("name", "carry"):
            return
        parts = parts[2:]
    model: Any = Recipe
    for i, part in enumerate(parts):
        done = ".".join(parts[: i + 1])
        if model is None:
            return
        if part.isdigit():  # a list index: keep the item type
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            if part not in model.model_fields:
                raise AdaptError(f"override names an unknown key{_did_you_mean(part, model)}",
                                 file=str(path), key=done, fix="see `adapt validate --help` for the sections")
            if part in _OPEN_MAPS:
                return
            model = _inner_model(model.model_fields[part].annotation)
        else:
            return


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside Optional/list/Annotated, or None (unions of several are left open)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [m for m in (_inner_model(a) for a in args) if m is not None]
    return models[0] if len(models) == 1 else None


def _did_you_mean(key: str, model: type[BaseModel]) -> str:
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- validation


def validate_data(data: Any, model: type[BaseModel], file: Path, lines: dict[str, int], prefix: str = ""):
    """``model.model_validate(data)``, turning the first pydantic error into an ``AdaptError``."""
    if not isinstance(data, dict):
        raise AdaptError("the file must hold a mapping of sections", file=str(file),
                         fix=f"start with keys such as {', '.join(list(model.model_fields)[:4])}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key, owner = _key_of(err["loc"], data, model)
        key = prefix + key
        what = err["msg"]
        fix = None
        if err["type"] == "extra_forbidden":
            what = "unknown key" + (_did_you_mean(key.rsplit(".", 1)[-1], owner) if owner else "")
            fix = "remove it or correct the spelling"
        elif err["type"] == "missing":
            fix = "add this key"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            what += f" (got {err['input']!r})"
            if what.startswith("Input should be "):
                fix = "make it " + err["msg"][len("Input should be "):]
        raise AdaptError(what, file=str(file), key=key, line=line_of(lines, key), fix=fix) from None


def _key_of(loc: tuple, data: Any, model: type[BaseModel]) -> tuple[str, type[BaseModel] | None]:
    """Turn a pydantic loc into the dotted key in the file, and the model that owns that key.

    pydantic puts union tags (e.g. ``files``) into locs; they are not keys in the file, so an
    item is kept only where the data has it, or where it is the last one (a missing or extra key).
    """
    parts: list[str] = []
    node, owner = data, model
    for i, item in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and item in node:
            if not last:
                owner = _field_model(owner, item)
                node = node[item]
            parts.append(str(item))
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            parts.append(str(item))
            owner = _source_model(node[item]) or owner
            node = node[item]
        elif last:
            parts.append(str(item))
    return ".".join(parts), owner


def _field_model(owner: type[BaseModel] | None, key: Any) -> type[BaseModel] | None:
    if owner is None or key not in owner.model_fields:
        return None
    return _inner_model(owner.model_fields[key].annotation)


def _source_model(item: Any) -> type[BaseModel] | None:
    from adapt.recipe.schema import Source

    kind = item.get("kind") if isinstance(item, dict) else None
    union = typing.get_args(typing.get_args(Source)[0])
    return next((m for m in union if typing.get_args(m.model_fields["kind"].annotation) == (kind,)), None)


# --------------------------------------------------------------------------- entry point


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedRecipe:
    """Read, override and validate a recipe, then check what spans sections."""
    path = Path(path)
    data, lines = read_recipe_data(path, overrides)
    if "stages" in data:
        raise AdaptError("this recipe is a pipeline (it has stages:)", file=str(path), key="stages",
                         fix="run it with `adapt train` or check it with `adapt validate`; for one stage, "
                             "write that stage as a recipe of its own")
    return check_recipe_data(data, path, lines)


def read_recipe_data(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict, dict[str, int]]:
    """The recipe file as a dict, with the overrides applied, and the line of each key."""
    data, lines = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AdaptError("a recipe must be a mapping of sections", file=str(path),
                         fix="start with model:, adapter:, data:, train:")
    apply_overrides(data, overrides, path)
    return data, lines


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...], path: Path) -> None:
    for override in overrides:
        apply_override(data, override, path)
        key = override.split("=", 1)[0].strip()
        if key in _BUDGETS and isinstance(data.get("train"), dict):
            drop_other_budgets(data["train"], key.split(".")[1])


def drop_other_budgets(train: dict, kept: str) -> None:
    """The budgets exclude each other: setting one replaces the others."""
    for other in _BUDGETS:
        if other.split(".")[1] != kept:
            train.pop(other.split(".")[1], None)


def check_recipe_data(data: dict, path: Path, lines: dict[str, int]) -> LoadedRecipe:
    recipe = validate_data(data, Recipe, path, lines)
    loaded = LoadedRecipe(recipe, path, lines)
    _check_cross_references(loaded)
    check_evaluation_sets(loaded)
    if recipe.name is None:
        recipe.name = path.stem
    return loaded



def _resolve_builtin_corpus(loaded: LoadedRecipe) -> None:
    """Corpus folders of the built-in model are relative to the recipe, like every other path."""
    builtin = loaded.recipe.model.builtin
    resolved = []
    for i, entry in enumerate(builtin.corpus):
        if entry == "stdlib":
            resolved.append(entry)
            continue
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else (loaded.base_dir / path)
        if loaded.recipe.model.is_builtin and not path.is_dir():
            raise loaded.error(f"corpus folder {entry!r} not found (looked at {path})", f"model.builtin.corpus.{i}",
                               fix="give a folder relative to the recipe, or 'stdlib'")
        resolved.append(str(path.resolve()))
    builtin.corpus = resolved


def _check_cross_references(loaded: LoadedRecipe) -> None:
    _resolve_builtin_corpus(loaded)
    check_objective(loaded)
    check_stage_sources(loaded)
    data = loaded.recipe.data
    names = [s.name for s in data.sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise loaded.error(f"source name {name!r} is used twice", f"data.sources.{i}.name",
                               fix="give each source its own name")
    mixture = data.mixture
    if isinstance(mixture, str):
        mixture = _read_mixture_file(loaded, mixture)
        data.mixture = mixture
    if mixture is None:
        if len(names) > 1:
            raise loaded.error("several sources need a mixture", "data.mixture",
                               fix=f"add e.g. `mixture: {{{names[0]}: 0.75, {names[1]}: 0.25}}`")
        data.mixture = {names[0]: 1.0}
        return
    for name in mixture:
        if name not in names:
            raise loaded.error(f"mixture names unknown source {name!r}{close_match(name, names)}",
                               f"data.mixture.{name}", fix=f"use one of: {', '.join(names)}")
    total = sum(mixture.values())
    if abs(total - 1.0) > 1e-6:
        raise loaded.error(f"mixture shares sum to {total:.6g}, not 1", "data.mixture",
                           fix="scale the shares so they add up to 1")
    for set_name, eval_set in data.eval.items():
        if eval_set.source not in names:
            raise loaded.error(f"eval set uses unknown source {eval_set.source!r}{close_match(eval_set.source, names)}",
                               f"data.eval.{set_name}.source", fix=f"use one of: {', '.join(names)}")


def _read_mixture_file(loaded: LoadedRecipe, ref: str) -> dict[str, float]:
    """A mixture file, relative to the recipe's folder or else to the current directory."""
    candidates = [Path(ref)] if Path(ref).is_absolute() else [loaded.base_dir / ref, Path.cwd() / ref]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise loaded.error(f"mixture file {ref!r} not found (looked at {', '.join(map(str, candidates))})",
                           "data.mixture", fix="give a path relative to the recipe or the current directory")
    data, lines = read_yaml(path)
    return validate_data(data, MixtureFile, path, lines).mixture


def close_match(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
