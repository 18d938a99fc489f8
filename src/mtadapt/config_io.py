"""Recipes as typed dataclasses: YAML with line tracking, overrides, one builder.

Used by every config that a user writes: runs (`mtadapt.config`), compare grids
(`mtadapt.compare.grid`) and servers (`mtadapt.serve.config`). Every problem is collected and
reported together as `file:LINE: key.path: message`, range checks included:

    lines = yaml_lines(text)                    # key path -> 1-based line
    builder = Builder("recipe.yaml", lines)
    config = builder.build(RunConfig, data, "") # wrong types, unknown keys, bad choices
    builder.error("train.max_steps", "must be >= 1, got 0")   # a range check, with its line
    builder.errors                              # ["recipe.yaml:7: train.max_steps: must be >= 1, got 0", ...]

Imports only the standard library, PyYAML and `mtadapt.errors`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml

from mtadapt.errors import ConfigError


def yaml_lines(text: str) -> dict[str, int]:
    """Map the key paths of a YAML mapping to their 1-based line numbers: `train.max_steps`,
    and list items by index, `cells[1]`, `cells[1].settings.rank`."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = f"{prefix}.{key.value}" if prefix else str(key.value)
                lines[path] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[f"{prefix}[{i}]"] = item.start_mark.line + 1
                walk(item, f"{prefix}[{i}]")

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


_LAST_STEP = re.compile(r"(\.[^.\[\]]+|\[\d+\])$")  # `.key` or `[i]` at the end of a path


def where(source: str, lines: dict[str, int], path: str) -> str:
    """`file:LINE` of `path`, else of the nearest enclosing key or list item that has a line
    (a default value: its section), else `source`. A line 0 marks a command-line override:
    no line, and no enclosing one either. A note on `source` (`r.yaml (+ overrides)`) stays
    off a line (`r.yaml:7`): that line is the file's."""
    while path:
        if path in lines:
            return f"{re.sub(r' [(][+] [^)]*[)]$', '', source)}:{lines[path]}" if lines[path] else source
        parent = _LAST_STEP.sub("", path, count=1)
        path = parent if parent != path else ""
    return source


class Builder:
    """Builds dataclasses from plain data, collecting every problem as `source:LINE: path: message`.

    Args:
        lines: key path -> line (`yaml_lines`).
        rename: the path as the reader wrote it, when the data was assembled from another
            tree (a compare cell's `train.lr` is the recipe's `cells[2].train.lr`); lines are
            looked up under the renamed path.
    """

    def __init__(self, source: str, lines: dict[str, int], rename: Callable[[str], str] | None = None):
        self.source = source
        self.lines = lines
        self.rename = rename or (lambda path: path)
        self.errors: list[str] = []

    def where(self, path: str) -> str:
        """`source:LINE` of the (renamed) `path`."""
        return where(self.source, self.lines, self.rename(path))

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.where(path)}: {self.rename(path)}: {message}")

    def build(self, cls: type, data: Any, path: str) -> Any:
        if not isinstance(data, dict):
            self.error(path or "<top>", f"expected a mapping of {cls.__name__} settings, got {type(data).__name__}")
            return cls()
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        kwargs = {}
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(fields)}"
                self.error(sub, f"unknown key; {hint}")
                continue
            kwargs[key] = self.value(hints[key], value, sub)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            self.error(path or "<top>", str(err))
            return cls()

    def value(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.value(options[0], value, path)
            return value
        if origin is Literal:
            if value not in args:
                self.error(path, f"{value!r} is not one of {', '.join(repr(a) for a in args)}")
            return value
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, path)
        if origin is list:
            if not isinstance(value, list):
                value = [value]
            return [self.value(args[0], v, f"{path}[{i}]") if args else v for i, v in enumerate(value)]
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                self.error(path, f"expected a mapping, got {value!r}")
                return {}
            return value
        if tp is Any:
            return value
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if tp is float and isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads `3e-4` as a string
            except ValueError:
                pass
        if tp is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
            self.error(path, f"expected {type_name(tp)}, got {value!r}")
        elif tp is float and not math.isfinite(value):
            # .inf / .nan (or an override `=inf`) would train to NaN weights without a word
            self.error(path, f"must be a finite number, got {value!r}")
        return value


def parse_override(text: str) -> tuple[str, Any]:
    """`train.learning_rate=3e-4` -> ("train.learning_rate", 0.0003) (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. train.max_steps=100")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "e" in raw.lower():
        value = float(raw)  # YAML 1.1 reads 3e-4 as a string; keep floats floats
    elif isinstance(value, str):
        try:
            value = float(raw) if any(c in raw.lower() for c in ".e") else value
        except ValueError:
            pass
    return key.strip(), value


def set_path(tree: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {path}: {part!r} is not a mapping")
    node[parts[-1]] = value


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, line: int):
        super().__init__(f"key {key!r} repeated")
        self.key, self.first_line, self.line = key, first_line, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may repeat
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
            if first != key_node.start_mark.line + 1:
                raise _DuplicateKey(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a key repeated in one mapping is an error (both lines named).

    Raises:
        ConfigError: invalid YAML, or a repeated key (`source:LINE: key 'x' repeats line N`).
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as err:
        raise ConfigError(
            f"{source}:{err.line}: key {err.key!r} is given twice, here and at line {err.first_line}; "
            "YAML would keep only the last: remove one"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error_message(err, text, source)) from None


def _yaml_error_message(err: yaml.YAMLError, text: str, source: str) -> str:
    """`source:LINE: invalid YAML: <problem>` from PyYAML's error, whose own text names the
    input "<unicode string>" and spreads over several lines; a tab indenting the line gets
    its own hint (YAML indents with spaces only)."""
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return f"{source}: invalid YAML: {' '.join(str(err).split())}"
    problem = " ".join(str(getattr(err, "problem", None) or "").split()) or "cannot parse"
    context = " ".join(str(getattr(err, "context", None) or "").split())
    context_mark = getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        context += f" (from line {context_mark.line + 1})"
    where = f"{source}:{mark.line + 1}:{mark.column + 1}"
    line = text.split("\n")[mark.line] if mark.line < len(text.split("\n")) else ""
    if "\t" in line[: len(line) - len(line.lstrip(" \t"))]:
        return f"{where}: invalid YAML: line {mark.line + 1} is indented with a tab; YAML indents with spaces only"
    return f"{where}: invalid YAML: {context + ': ' if context else ''}{problem}"


def read_yaml_mapping(path: Path, expected: str) -> tuple[dict, str]:
    """Parse a recipe file that must hold a YAML mapping; returns (data, text).

    Raises:
        FileNotFoundError: no such file.
        ConfigError: invalid YAML, or not a mapping (`expected` says what it should hold).
    """
    if path.is_dir():
        raise ConfigError(f"recipe {path} is a folder; give a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); a recipe is a YAML file") from None
    data = load_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is {expected}")
    return data, text
