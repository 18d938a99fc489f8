"""Gettext catalogs (.po/.pot) translated entry by entry, read and written with polib.

What is translated, and what is kept:

    for entry in catalog (not the header, not obsolete #~ entries):
        if entry has a translation already (any msgstr / msgstr_plural non-empty): keep it as is
        elif entry.msgid_plural:
            msgstr_plural[0] = T(msgid); msgstr_plural[1..nplurals-1] = T(msgid_plural)
        else:
            msgstr = T(msgid)
        a translated entry is marked `fuzzy`: machine output for a human to review (msgfmt
        leaves fuzzy entries out of the .mo until the flag is removed)

`nplurals` comes from the header's Plural-Forms, else 2. T translates each line of a
multi-line msgid on its own and keeps its leading/trailing whitespace, so `\\n` at either end
(which `msgfmt --check` compares) survives. With `protect` (the default) placeholders are
masked (`mtadapt.data.placeholders`) and every problem is returned with the entry's line.
Contexts, comments, references, flags and the header are never changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polib

from mtadapt.data.placeholders import MASK_STYLES, MaskStyle, PlaceholderProblem, translate_protected
from mtadapt.errors import DataError


@dataclass(frozen=True)
class EntryWarning:
    """A placeholder problem in one entry's machine translation.

    Attributes:
        line: The entry's first line in the .po file (1-based).
        field: "msgid" or "msgid_plural": the source text whose translation has the problem.
        source: That source text.
        problem: What went wrong.
    """

    line: int
    field: str
    source: str
    problem: PlaceholderProblem

    def describe(self) -> str:
        return f"{self.field} {self.source!r}: {self.problem.describe()}"


def read_catalog(path: str | Path) -> polib.POFile:
    """Parse a .po/.pot file; a syntax error is a DataError naming the file."""
    try:
        return polib.pofile(str(path), wrapwidth=78)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable gettext catalog: {err}") from None


def plural_count(catalog: polib.POFile) -> int:
    """`nplurals` of the header's Plural-Forms, else 2."""
    m = re.search(r"nplurals\s*=\s*(\d+)", catalog.metadata.get("Plural-Forms", ""))
    return int(m.group(1)) if m and int(m.group(1)) > 0 else 2


def needs_translation(entry: polib.POEntry) -> bool:
    """True for a live entry with no translation at all."""
    if entry.obsolete or entry.msgid == "":
        return False
    if entry.msgid_plural:
        return not any(entry.msgstr_plural.values())
    return not entry.msgstr


def _split_line(line: str) -> tuple[str, str, str]:
    core = line.strip()
    if not core:
        return line, "", ""
    start = line.index(core)
    return line[:start], core, line[start + len(core) :]


def translate_catalog(
    catalog: polib.POFile,
    translate: Callable[[list[str]], list[str]],
    protect: bool = True,
    styles: list[MaskStyle] | tuple[MaskStyle, ...] = MASK_STYLES,
) -> tuple[int, list[EntryWarning]]:
    """Fill the untranslated entries of `catalog` in place (see the module docstring).

    Args:
        translate: texts -> their translations, one each, in order (a batch).
        protect: mask placeholders during translation and report any that did not come
            through exactly once.
        styles: the mask styles the model's tokenizer keeps intact (`usable_styles`).

    Returns:
        (entries translated, placeholder warnings in file order).
    """
    entries = [e for e in catalog if needs_translation(e)]
    n_forms = plural_count(catalog)
    # every source text an entry needs, each line on its own: (entry index, form, line index)
    sources: list[str] = []
    where: list[tuple[int, int, int]] = []
    layouts: list[list[list[tuple[str, str, str]]]] = []
    for i, e in enumerate(entries):
        forms = [e.msgid, e.msgid_plural] if e.msgid_plural else [e.msgid]
        layout = []
        for f, text in enumerate(forms):
            lines = [_split_line(line) for line in text.split("\n")]
            layout.append(lines)
            for j, (_, core, _) in enumerate(lines):
                if core:
                    sources.append(core)
                    where.append((i, f, j))
        layouts.append(layout)
    if protect:
        results = translate_protected(translate, sources, styles)
    else:
        results = [(t, []) for t in translate(sources)] if sources else []
    problems: dict[tuple[int, int], list[PlaceholderProblem]] = {}
    translated_cores: dict[tuple[int, int, int], str] = {}
    for (i, f, j), (text, found) in zip(where, results, strict=True):
        translated_cores[(i, f, j)] = text.strip()
        problems.setdefault((i, f), []).extend(found)
    warnings: list[EntryWarning] = []
    for i, e in enumerate(entries):
        forms = []
        for f, lines in enumerate(layouts[i]):
            forms.append("\n".join(lead + translated_cores.get((i, f, j), "") + trail if core else lead
                                   for j, (lead, core, trail) in enumerate(lines)))
        if e.msgid_plural:
            e.msgstr_plural = {0: forms[0], **{k: forms[1] for k in range(1, n_forms)}}
        else:
            e.msgstr = forms[0]
        if "fuzzy" not in e.flags:
            e.flags.insert(0, "fuzzy")  # first, as msgmerge writes it
        for f, field in enumerate(["msgid", "msgid_plural"][: len(layouts[i])]):
            source = e.msgid if f == 0 else e.msgid_plural
            warnings += [EntryWarning(e.linenum, field, source, p) for p in problems.get((i, f), [])]
    return len(entries), warnings
