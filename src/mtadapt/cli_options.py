"""Command-line options built from settings dataclasses, so a field is declared once.

    add_dataclass_options(parser, NoiseConfig, flags={"word_shuffle_distance": "--shuffle-distance"})
    config = dataclass_from_args(NoiseConfig, args)

Each init field becomes `--field-name` (or the flag `flags` gives it), typed from its
annotation: int / float / str, `X | None`, `Literal[...]` (choices), and bool: a field that
defaults to False is a switch that sets it; one that defaults to True is a switch that clears
it (name it in `flags`, e.g. `drop_empty` -> `--keep-empty`). The help text is the field's
entry in the class docstring's `Attributes:` section, or `helps`' text for the flag: give one
for a switch that clears a field, whose entry says what the field does, not the flag
(`drop_empty: Drop empty outputs.` -> `--keep-empty`: "keep empty outputs"). Fields in `skip`, and fields whose type
is not one of these (a nested config), get no option and keep their default.

A field declared with `option(...)` says more: its flags (`option(flags=("-i", "--input"))`),
that it is a positional argument (`positional=True`), its range (`range=Number(...)`), its
`nargs` (`--real SRC TGT`: `nargs="+"`), or that it is a group: a nested settings dataclass
whose fields become options in turn (`option(group=True, flags=..., ranges=...)`). A `list[X]`
field is a repeated flag (`--adapter A --adapter B`), or a positional taking any number of
values. A field with no default is a required flag (or positional). A docstring `Attributes:`
section of a base class documents the fields it declares.

Every numeric option parses with `Number`, an argparse `type=` that refuses nan, inf and values
outside the option's range with one message naming the range (`ranges` gives each field's;
without one a field only has to be finite):

    parser.add_argument("--beam", type=Number(int, 1, 64), default=1)
    # mtadapt evaluate: error: argument --beam: must be in [1, 64], got 0
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class Number:
    """argparse `type=`: a finite `kind` in [low, high], else `argparse.ArgumentTypeError` naming
    the range, so every numeric flag fails the same way: one `error:` line naming the flag, exit 2.

    Attributes:
        kind: int or float.
        low: Smallest valid value (None: no lower bound).
        high: Largest valid value (None: none); give one where a larger value is held in memory.
        low_open: `low` itself is not valid (> low).
        high_open: `high` itself is not valid (< high).
        off: One more valid value outside the range that switches the feature off (e.g. 0).
    """

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    off: float | None = None

    @property
    def __name__(self) -> str:  # argparse names the type in its messages
        return self.kind.__name__

    def describe(self) -> str:
        """The valid values, e.g. ">= 1", "> 0", "in [0, 1)", "0 (off) or >= 1", "finite"."""
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {self.low}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {self.high}"
        else:
            text = "finite"
        return text if self.off is None else f"{self.off} (off) or {text}"

    def valid(self, value: float) -> bool:
        """Whether `value` (already a `kind`) is accepted."""
        if value == self.off:
            return True
        return (math.isfinite(value)
                and (self.low is None or value > self.low or (value == self.low and not self.low_open))
                and (self.high is None or value < self.high or (value == self.high and not self.high_open)))

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if self.kind is int else 'a number'} {self.describe()}, got {text!r}") from None
        if not self.valid(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return value


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> its description in the Google-style `Attributes:` section of `cls` (or of
    the base class that declares the field)."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        out.update(_own_attribute_docs(base))
    return out


def _own_attribute_docs(cls: type) -> dict[str, str]:
    doc = cls.__dict__.get("__doc__") or ""
    match = re.search(r"^\s*Attributes:\s*$(.*?)(?=^\s*\w+:\s*$|\Z)", doc, re.M | re.S)
    if not match:
        return {}
    out: dict[str, str] = {}
    name = None
    for line in match.group(1).splitlines():
        entry = re.match(r"^\s*(\w+):\s*(.*)$", line)
        if entry and (name is None or len(line) - len(line.lstrip()) <= _indent_of(match.group(1))):
            name = entry.group(1)
            out[name] = entry.group(2).strip()
        elif name is not None and line.strip():
            out[name] += " " + line.strip()
    return out


def _indent_of(block: str) -> int:
    lines = [line for line in block.splitlines() if line.strip()]
    return min((len(line) - len(line.lstrip()) for line in lines), default=0)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tp), True
    return tp, False


_META = "cli_option"  # the key of `option`'s declaration in a field's metadata


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           flags: tuple[str, ...] | dict[str, str] = (), positional: bool = False, nargs: str | None = None,
           range: Number | None = None, help: str | None = None, group: bool = False,  # noqa: A002 (argparse's names)
           choices: tuple[str, ...] | None = None,
           ranges: dict[str, Number] | None = None, helps: dict[str, str] | None = None) -> Any:
    """A dataclass field with what its command-line option needs beyond its type and docstring.

    Args:
        default, default_factory: As `dataclasses.field` (neither: a required flag or positional).
        flags: The option's flags, e.g. ("-i", "--input") (default `--field-name`); for a
            `group`, field name -> flag for the nested fields.
        positional: A positional argument instead of a flag.
        nargs: argparse's nargs for a list field (default: a flag repeats, a positional takes any number).
        range: A numeric field's valid values.
        choices: A str field's valid values, where they are a tuple elsewhere (else use a Literal).
        help: The help text instead of the docstring entry (a switch that clears a field).
        group: The field is a settings dataclass whose own fields become options.
        ranges, helps: A group's fields' ranges and help texts (field name -> value).
    """
    meta = {"flags": flags, "positional": positional, "nargs": nargs, "range": range, "help": help, "group": group,
            "choices": choices,
            "ranges": ranges or {}, "helps": helps or {}}
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_META: meta})


def _declared(f: dataclasses.Field) -> dict[str, Any]:
    return f.metadata.get(_META, {})


def _list_item(tp: Any) -> Any:
    """X for `list[X]` (X int, float or str), else None."""
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (str,)
        return item if item in (int, float, str) else None
    return None


def _option_fields(cls: type, skip: set[str]) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        simple = tp in (int, float, str, bool) or typing.get_origin(tp) is Literal or _list_item(tp) is not None
        if simple or (_declared(f).get("group") and dataclasses.is_dataclass(tp)):
            out.append((f, tp))
    return out


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, *, flags: dict[str, str] | None = None,
                          skip: set[str] | frozenset[str] = frozenset(), ranges: dict[str, Number] | None = None,
                          helps: dict[str, str] | None = None) -> None:
    """Add one option per supported init field of the dataclass `cls` (see the module docstring).

    The parsed value lands in `args.<field name>` whatever the flag is called. `ranges` gives
    the valid values of numeric fields (field name -> `Number`); others need only be finite.
    `helps` replaces a field's docstring entry as its option's help (field name -> text).
    `flags`, `ranges` and `helps` override what a field's `option(...)` declares.

    Raises:
        TypeError: a switch that clears a field (it defaults to True) without its help text.
    """
    fields = _option_fields(cls, set(skip))
    declared = {f.name: _declared(f) for f, _ in fields}
    flags = {**{n: d["flags"] for n, d in declared.items() if d.get("flags") and not d["group"]}, **(flags or {})}
    ranges = {**{n: d["range"] for n, d in declared.items() if d.get("range")}, **(ranges or {})}
    helps = {**{n: d["help"] for n, d in declared.items() if d.get("help")}, **(helps or {})}
    docs = {**attribute_docs(cls), **helps}
    unknown = set(ranges) - {f.name for f, _ in fields}
    if unknown:
        raise TypeError(f"ranges for {', '.join(sorted(unknown))}: not option fields of {cls.__name__}")
    for f, tp in fields:
        meta = declared[f.name]
        if meta.get("group"):
            add_dataclass_options(parser, tp, flags=dict(meta["flags"] or {}), ranges=meta["ranges"], helps=meta["helps"])
            continue
        given = flags.get(f.name, "--" + f.name.replace("_", "-"))
        names = [given] if isinstance(given, str) else list(given)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = docs.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        if tp is bool:
            if default and f.name not in helps:
                raise TypeError(f"{cls.__name__}.{f.name} defaults to True: {names[0]} clears it; give its help in `helps` "
                                "(the docstring says what the field does, not the flag)")
            parser.add_argument(*names, dest=f.name, action="store_false" if default else "store_true", help=help_text)
            continue
        item = _list_item(tp)
        kind = item if item is not None else tp
        kwargs: dict[str, Any] = {"default": default}
        if typing.get_origin(kind) is Literal or meta.get("choices"):
            kwargs["choices"] = list(meta.get("choices") or typing.get_args(kind))
        elif kind in (int, float):
            number = ranges.get(f.name, Number(kind))
            if number.kind is not kind:
                raise TypeError(f"{cls.__name__}.{f.name} is {kind.__name__}; its range is a Number({number.kind.__name__})")
            kwargs["type"] = number
        else:
            kwargs["type"] = kind
        if meta.get("positional"):
            kwargs["nargs"] = meta.get("nargs") or ("*" if item is not None else None if required else "?")
            if kwargs["nargs"] is None:
                del kwargs["nargs"], kwargs["default"]
            parser.add_argument(f.name, help=help_text, **kwargs)
            continue
        kwargs["dest"] = f.name
        if required:
            kwargs["required"] = True
        if item is not None:
            if meta.get("nargs"):
                kwargs["nargs"] = meta["nargs"]
            else:
                kwargs["action"] = "append"
        shown = "" if default in (None, []) or item is not None or required or "default" in help_text else f" (default {default})"
        parser.add_argument(*names, help=help_text + shown, **kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of `cls` from the options `add_dataclass_options` added (plus `overrides`)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if _declared(f).get("group"):
            values[f.name] = dataclass_from_args(_unwrap_optional(hints[f.name])[0], args)
        elif hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = list(value) if isinstance(value, list) else value
    values.update(overrides)
    return cls(**values)
