"""Placeholders protected through translation: masked before generation, restored after.

A placeholder is text the product's code fills in or renders (printf `%s`, `%(name)s`,
`%1$s`, `%%`; brace `{0}`, `{name}`, `{0:.2f}`; ICU simple arguments `{count, number}`;
HTML entities `&amp;`; inline tags `<b>`, `</b>`, `<br/>`). A model may translate, split or
drop it; a product whose string lost `%s` breaks. So each placeholder is replaced by a mask
token the tokenizer keeps intact, and put back afterwards:

    styles = usable_styles(round_trip)          # mask styles the codec encodes+decodes intact
    m = mask(text, styles)                      # style: the first whose tokens text lacks and
                                                #   whose masked text restores to text exactly
    #   m.text = text with placeholder k replaced by style.token(k), k = 0, 1, ...
    #   m.placeholders[k] = the original text of placeholder k
    out, problems = restore(translate(m.text), m)
    #   every exact style.token(k) in the output -> m.placeholders[k]
    #   count(k) == 0 -> Problem("missing", ...); count(k) > 1 -> Problem("duplicated", ...)
    #   a well-formed token with k >= len(m.placeholders) -> Problem("unexpected"), left as is
    restore(m.text, m) == (text, [])            # the round trip is the identity

Restoring replaces whole mask tokens only, so it never writes half a placeholder: a token the
model broke (`PH 0`) stays as the model wrote it and its placeholder is reported missing.
Problems are returned with every translation, never dropped. Not covered: ICU plural/select
arguments with nested braces (`{n, plural, one {...}}`) are left unmasked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

# Alternatives, tried in this order at each position (longest forms first).
PLACEHOLDER = re.compile(
    r"""
      </?[A-Za-z][A-Za-z0-9-]*(?:\s+[^<>]*?)?\s*/?>                  # inline tag <b>, </b>, <br/>, <a href="x">
    | &(?:[A-Za-z][A-Za-z0-9]*|\#[0-9]+|\#[xX][0-9A-Fa-f]+);          # HTML entity &amp; &#39; &#x2014;
    | %%                                                             # printf literal percent
    | %\([A-Za-z_][A-Za-z0-9_]*\)[-+\#0]*[0-9]*(?:\.[0-9]+)?[diouxXeEfFgGcrsa]  # %(name)s
    | %[0-9]+\$[-+\#0]*[0-9]*(?:\.[0-9]+)?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGcspa@]  # %1$s
    | %[-+\#0]*[0-9]*(?:\.[0-9]+)?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGcspa@]  # %s %d %5.2f %ld
    | \{\s*[A-Za-z0-9_]+\s*,\s*(?:number|date|time|spellout|ordinal|duration)\s*(?:,\s*[^{}]*)?\}  # ICU {n, number}
    | \{[A-Za-z0-9_.]*(?:\[[A-Za-z0-9_]+\])?(?:![rsa])?(?::[^{}]*)?\}  # brace {0} {name} {} {0:.2f} {user.name}
    """,
    re.VERBOSE,
)
# No space flag in printf: "50% of" would read as `% o`.


def find_placeholders(text: str) -> list[str]:
    """The placeholders of `text`, in order (a `%s` twice is listed twice)."""
    return [m.group(0) for m in PLACEHOLDER.finditer(text)]


@dataclass(frozen=True)
class MaskStyle:
    """How placeholder k is written while masked: `prefix + digits(k) + suffix`.

    `digits` spells k in base 10 with the characters given (the tiny test tokenizers know
    only letters, so one style spells numbers with letters).
    """

    name: str
    prefix: str
    suffix: str
    digits: str = "0123456789"

    def token(self, k: int) -> str:
        spelled = "".join(self.digits[int(c)] for c in str(k))
        return self.prefix + spelled + self.suffix

    @property
    def pattern(self) -> re.Pattern[str]:
        d = re.escape(self.digits) if self.digits != "0123456789" else "0-9"
        # tokens may be glued to words (`<b>bold` -> `PH8bold`); with no suffix, the longest
        # run of digits is the number (`PH10` is not PH1 + "0")
        after = rf"(?![{d}])" if not self.suffix else ""
        return re.compile(rf"{re.escape(self.prefix)}([{d}]+){re.escape(self.suffix)}{after}")

    def index(self, spelled: str) -> int:
        return int("".join(str(self.digits.index(c)) for c in spelled))


# Preferred first: forms real MT models copy through (checked with bergamot:pt-en's
# SentencePiece model); the last one for vocabularies of letters only (tiny:marian).
MASK_STYLES: tuple[MaskStyle, ...] = (
    MaskStyle("ph", "PH", ""),
    MaskStyle("bracket", "[", "]"),
    MaskStyle("underscore", "__", "__"),
    MaskStyle("letters", "qz", "q", digits="abcdefghij"),
)


def usable_styles(round_trip: Callable[[str], str], styles: tuple[MaskStyle, ...] = MASK_STYLES) -> list[MaskStyle]:
    """The styles whose tokens survive `round_trip` (a tokenizer's encode then decode) intact.

    Falls back to all `styles` when none survives: masking then still happens, and every
    placeholder the model cannot copy is reported missing.
    """
    ok = []
    for style in styles:
        probe = f"a {style.token(0)} b {style.token(12)}."
        out = round_trip(probe)
        if [m.group(0) for m in style.pattern.finditer(out)] == [style.token(0), style.token(12)]:
            ok.append(style)
    return ok or list(styles)


@dataclass
class Masked:
    """A text with its placeholders masked.

    Attributes:
        text: The text to translate.
        placeholders: placeholders[k] is the original text behind `style.token(k)`.
        style: The mask style used (None: nothing masked).
    """

    text: str
    placeholders: list[str] = field(default_factory=list)
    style: MaskStyle | None = None


@dataclass(frozen=True)
class PlaceholderProblem:
    """One placeholder that did not come through exactly once.

    Attributes:
        kind: "missing" (not in the output), "duplicated" (more than once; every copy restored),
            "unexpected" (a mask token the source did not have, left as is), "unprotected"
            (no style could mask the source unambiguously, so nothing was masked).
        placeholder: The placeholder's text (or the unexpected token).
        count: How many times it appears in the output.
    """

    kind: Literal["missing", "duplicated", "unexpected", "unprotected"]
    placeholder: str
    count: int

    def describe(self) -> str:
        if self.kind == "missing":
            return f"placeholder {self.placeholder!r} is missing from the translation"
        if self.kind == "duplicated":
            return f"placeholder {self.placeholder!r} appears {self.count} times in the translation (once in the source)"
        if self.kind == "unexpected":
            return f"the translation has a mask token {self.placeholder!r} the source did not have"
        return f"placeholders such as {self.placeholder!r} not protected: the source already contains every style's mask tokens"


def mask(text: str, styles: list[MaskStyle] | tuple[MaskStyle, ...] = MASK_STYLES) -> Masked:
    """Replace each placeholder of `text` with a mask token of the first style `text` lacks."""
    found = list(PLACEHOLDER.finditer(text))
    if not found:
        return Masked(text)
    for style in styles:
        if style.pattern.search(text):  # the text has this style's tokens already: ambiguous
            continue
        parts, pos = [], 0
        for k, m in enumerate(found):
            parts += [text[pos : m.start()], style.token(k)]
            pos = m.end()
        parts.append(text[pos:])
        masked = Masked("".join(parts), [m.group(0) for m in found], style)
        if restore(masked.text, masked) == (text, []):  # e.g. `%s7` -> `PH07` would read as PH7
            return masked
    return Masked(text)  # no style fits: restore reports the placeholders "unprotected"


def restore(translation: str, masked: Masked) -> tuple[str, list[PlaceholderProblem]]:
    """Put the placeholders back into the translation of `masked.text`; report the rest."""
    if masked.style is None:
        found = find_placeholders(masked.text)
        return translation, [PlaceholderProblem("unprotected", found[0], 0)] if found else []
    style, n = masked.style, len(masked.placeholders)
    counts = [0] * n
    unexpected: list[str] = []

    def put_back(m: re.Match[str]) -> str:
        k = style.index(m.group(1))
        if k >= n or m.group(1) != style.token(k)[len(style.prefix) : len(style.token(k)) - len(style.suffix)]:
            unexpected.append(m.group(0))  # e.g. PH7 of 3, or PH00: not ours, left as written
            return m.group(0)
        counts[k] += 1
        return masked.placeholders[k]

    out = style.pattern.sub(put_back, translation)
    problems = []
    for k, c in enumerate(counts):
        if c == 0:
            problems.append(PlaceholderProblem("missing", masked.placeholders[k], 0))
        elif c > 1:
            problems.append(PlaceholderProblem("duplicated", masked.placeholders[k], c))
    problems += [PlaceholderProblem("unexpected", t, translation.count(t)) for t in dict.fromkeys(unexpected)]
    return out, problems


def translate_protected(
    translate: Callable[[list[str]], list[str]],
    texts: list[str],
    styles: list[MaskStyle] | tuple[MaskStyle, ...] = MASK_STYLES,
) -> list[tuple[str, list[PlaceholderProblem]]]:
    """Translate `texts` through `translate` with placeholders masked; per text, its
    translation and its placeholder problems (empty when each came through exactly once)."""
    if not texts:
        return []
    masks = [mask(t, styles) for t in texts]
    outs = translate([m.text for m in masks])
    return [restore(o, m) for o, m in zip(outs, masks, strict=True)]
