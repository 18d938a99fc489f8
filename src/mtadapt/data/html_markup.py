"""HTML translated block by block, inline markup kept in place, the document kept well-formed.

The parser is lxml.html (libxml2's HTML parser): maintained, the fastest of the Python HTML
parsers, it repairs broken markup the way browsers roughly do (unclosed `<p>`, stray `</b>`),
and its tree is edited in place and serialized well-formed. html5lib is spec-exact but pure
Python and ~30x slower; selectolax (lexbor) is fast but its tree API cannot splice a run of
mixed text and elements; BeautifulSoup is a wrapper over one of these. lxml is installed with
sacrebleu already.

What is one segment, and what is left alone:

    block   = an element not in INLINE (p, li, td, h1, div, title ...), or an inline one holding
              a block (`<a><div>..</div></a>`)
    segment = a maximal run of text and inline elements inside one block, between its block
              children; translated as ONE text, its inline markup masked as placeholders:
              "Hi <b>dear</b> @<span>bob</span><br>bye" -> "Hi PH0dearPH1 @PH2bobPH3PH4bye"
    atomic  = script, style, code, pre, kbd, samp, textarea, template, svg, math, comments,
              anything with translate="no" or class "notranslate": kept as they are, one
              placeholder when inside a segment
    attributes: only alt and title are translated (each as a segment of its own)
    entities: kept exactly as written (`&amp;`, `&nbsp;`, `&#39;` come out as they came in),
              each a placeholder in its segment

    after translation, per segment:
      every tag placeholder exactly once, opens and closes properly nested (the model may move
      them: "<b>dog</b> big" -> "grande <b>cão</b>")  -> the run is rebuilt from the output
      else -> fallback: the run's structure is kept as it was and each text between two tags is
              translated on its own (a second batch); a warning says so

So the multiset of elements with their attributes (alt and title values aside) in equals the
multiset out, whatever the model writes, and the output is serialized by lxml, well-formed.
Placeholders in the text (printf `%s`, brace `{name}`, ICU `{n, number}`; `protect`) are
masked and restored as in `mtadapt.data.placeholders`, problems reported per segment.

Entities between tags (and control characters, which lxml refuses) are kept by swapping each
for a character of Unicode's plane-15 private use area before parsing and back after serializing (an input that already
holds such a character has its entities decoded by the parser instead, and says so in a
warning). Inside attribute values lxml decodes them and writes back an equivalent spelling
(`&amp;` stays `&amp;`; `&#39;` becomes `'`).
"""

from __future__ import annotations

import copy
import dataclasses
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import lxml.html
from lxml import etree

from mtadapt.data.placeholders import MASK_STYLES, PLACEHOLDER, Masked, MaskStyle, PlaceholderProblem, restore

INLINE = frozenset("a abbr b bdi bdo big br cite code data del dfn em font i img ins kbd label mark q s samp small span "
                   "strike strong sub sup time tt u var wbr".split())
ATOMIC = frozenset("script style code pre kbd samp textarea template svg math noscript".split())
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
TRANSLATED_ATTRIBUTES = ("alt", "title")
ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")
_PUA_FIRST, _PUA_LAST = 0xF0000, 0xFFFFD  # plane 15, private use: an entity's stand-in while parsed
_PUA = re.compile("[\U000F0000-\U000FFFFD]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")  # C0 controls but tab, LF, FF, CR; and DEL
_TAG = re.compile(r"(<!--.*?-->|<[^>]*>)", re.DOTALL)
_HTML_SPACE = re.compile("[ \t\n\r\f]+")  # not \s: a no-break space is text
_DOCTYPE = re.compile(r"<!doctype[^>]*>", re.IGNORECASE)
_DOCUMENT = re.compile(r"^\s*(?:<!--.*?-->\s*)*(?:<!doctype|<html)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class HtmlWarning:
    """One problem of one segment.

    Attributes:
        segment: The segment's source text (markup masked out), to find it.
        kind: A placeholder problem's kind, or "markup" (the model did not keep the inline tags;
            the segment's texts were translated one by one), or "entities" (the input held
            private-use characters, so entities were decoded).
        placeholder: The placeholder concerned ("" for markup/entities).
        message: One line saying what happened.
    """

    segment: str
    kind: str
    placeholder: str
    message: str


@dataclass
class _Mark:
    """A placeholder of a segment: a tag (open/close/void), an atomic element, an entity, or
    a text placeholder (printf, brace)."""

    kind: str  # "open" | "close" | "void" | "atomic" | "entity" | "text"
    value: object  # the element (open/close/void/atomic), else the text it stands for

    @property
    def markup(self) -> str:
        if self.kind in ("entity", "text"):
            return str(self.value)
        el = self.value
        if self.kind == "close":
            return f"</{el.tag}>"
        if self.kind == "atomic":
            out = etree.tostring(el, encoding="unicode", with_tail=False) if isinstance(el.tag, str) else str(el)
            return out if len(out) <= 40 else out[:37] + "..."
        attrs = "".join(f' {k}="{html.escape(v)}"' for k, v in el.attrib.items())
        return f"<{el.tag}{attrs}>"

    @property
    def structural(self) -> bool:
        return self.kind in ("open", "close", "void", "atomic")


Piece = str | _Mark


@dataclass
class _Segment:
    """One text to translate: pieces, and where the result goes (a run of a block's content,
    or an attribute)."""

    pieces: list[Piece]
    parent: etree._Element | None = None  # run: the block; attribute: the element
    anchor: etree._Element | None = None  # run: the block child whose tail starts it (None: parent.text)
    children: list[etree._Element] = field(default_factory=list)  # run: its inline elements
    attribute: str | None = None


def _is_atomic(el: etree._Element) -> bool:
    if not isinstance(el.tag, str):  # comment, processing instruction
        return True
    return (el.tag in ATOMIC or el.get("translate", "").strip().lower() == "no"
            or "notranslate" in el.get("class", "").split())


def _is_inline(el: etree._Element) -> bool:
    if _is_atomic(el):
        return not isinstance(el.tag, str) or el.tag in INLINE or el.tag in ("script", "style", "template", "svg", "math")
    return el.tag in INLINE and not any(isinstance(d.tag, str) and d.tag not in INLINE for d in el.iterdescendants())


def _text_pieces(text: str | None) -> list[Piece]:
    """Text with its entity stand-ins as marks."""
    if not text:
        return []
    out: list[Piece] = []
    pos = 0
    for m in _PUA.finditer(text):
        if m.start() > pos:
            out.append(text[pos:m.start()])
        out.append(_Mark("entity", m.group(0)))
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def _inline_pieces(el: etree._Element) -> list[Piece]:
    if _is_atomic(el):
        return [_Mark("atomic", el)]
    if el.tag in VOID:
        return [_Mark("void", el)]
    out: list[Piece] = [_Mark("open", el), *_text_pieces(el.text)]
    for child in el:
        out += _inline_pieces(child) + _text_pieces(child.tail)
    return out + [_Mark("close", el)]


def _collect(block: etree._Element, segments: list[_Segment]) -> None:
    """The segments of `block` (runs between its block children) and of its descendants."""
    if _is_atomic(block):
        return
    _collect_attributes(block, segments)
    run = _Segment(_text_pieces(block.text), block, None)
    for child in block:
        if _is_inline(child):
            run.children.append(child)
            run.pieces += _inline_pieces(child) + _text_pieces(child.tail)
            _collect_attributes(child, segments)
        else:
            segments.append(run)
            _collect(child, segments)
            run = _Segment(_text_pieces(child.tail), block, child)
    segments.append(run)


def _collect_attributes(el: etree._Element, segments: list[_Segment]) -> None:
    """Segments of `el`'s alt/title (and, for an inline element, of its descendants')."""
    if not isinstance(el.tag, str) or _is_atomic(el):
        return
    for name in TRANSLATED_ATTRIBUTES:
        if el.get(name):
            segments.append(_Segment(_text_pieces(el.get(name)), el, attribute=name))
    if el.tag in INLINE:
        for child in el:
            _collect_attributes(child, segments)


def _plain(pieces: list[Piece]) -> str:
    return "".join(p if isinstance(p, str) else "" for p in pieces)


def _described(pieces: list[Piece]) -> str:
    """A segment as warnings name it: its text with entities, without tags."""
    return "".join(p if isinstance(p, str) else str(p.value) if p.kind == "entity" else "" for p in pieces).strip()


@dataclass
class _Masked(Masked):
    """A segment's masked text; glued[k]: token k had no space before / after it in the source
    (one is added there for the model, and taken off its output again)."""

    glued: list[tuple[bool, bool]] = field(default_factory=list)


def _mask(pieces: list[Piece], style: MaskStyle, protect: bool) -> tuple[_Masked, list[_Mark]] | None:
    """The pieces as one text to translate, each mark a mask token (text placeholders too, with
    `protect`), spaced from the words around it (models translate "the PH0 red PH1 car", they
    copy "the PH0redPH1 car"); None when the text would not split back into the same pieces."""
    parts: list[str] = []
    marks: list[_Mark] = []
    for p in pieces:
        if isinstance(p, _Mark):
            parts.append(style.token(len(marks)))
            marks.append(p)
            continue
        pos = 0
        for m in PLACEHOLDER.finditer(p) if protect else ():
            parts += [p[pos:m.start()], style.token(len(marks))]
            marks.append(_Mark("text", m.group(0)))
            pos = m.end()
        parts.append(p[pos:])
    text = _HTML_SPACE.sub(" ", "".join(parts))  # HTML collapses whitespace: one space says the same
    found = list(style.pattern.finditer(text))
    if [style.index(m.group(1)) for m in found] != list(range(len(marks))):
        return None  # e.g. `%s7` -> `PH07`
    spaced: list[str] = []
    glued: list[tuple[bool, bool]] = []
    pos = 0
    for m in found:
        before = m.start() > 0 and text[m.start() - 1] != " "
        after = m.end() < len(text) and text[m.end()] != " "
        glued.append((before, after))
        spaced.append(text[pos:m.start()])
        if before and not (spaced and "".join(spaced[-2:]).endswith(" ")):
            spaced.append(" ")
        spaced += [m.group(0), " " if after else ""]
        pos = m.end()
    spaced.append(text[pos:])
    return _Masked("".join(spaced), [m.markup for m in marks], style, glued), marks


def _unglue(sequence: list[str | int], glued: list[tuple[bool, bool]]) -> list[str | int]:
    """Take off the spaces `_mask` put around tokens that were glued to their neighbours."""
    items = list(sequence)
    for j, x in enumerate(items):
        if isinstance(x, int):
            before, after = glued[x]
            if before and j > 0 and isinstance(items[j - 1], str) and items[j - 1].endswith(" "):
                items[j - 1] = items[j - 1][:-1]
            if after and j + 1 < len(items) and isinstance(items[j + 1], str) and items[j + 1].startswith(" "):
                items[j + 1] = items[j + 1][1:]
    return [x for x in items if x != ""]


def _split(translation: str, style: MaskStyle, n: int) -> list[str | int]:
    """The translation as text and mark indices (a token of no mark stays text)."""
    out: list[str | int] = []
    pos = 0
    for m in style.pattern.finditer(translation):
        k = style.index(m.group(1))
        if k < n and m.group(0) == style.token(k):
            out += [translation[pos:m.start()], k]
            pos = m.end()
    out.append(translation[pos:])
    return [x for x in out if x != ""]


def _nests(sequence: list[str | int], marks: list[_Mark]) -> bool:
    """Every structural mark exactly once, closes matching opens."""
    seen = [k for k in sequence if isinstance(k, int) and marks[k].structural]
    if sorted(seen) != [k for k, m in enumerate(marks) if m.structural]:
        return False
    stack: list[object] = []
    for k in seen:
        if marks[k].kind == "open":
            stack.append(marks[k].value)
        elif marks[k].kind == "close":
            if not stack or stack.pop() is not marks[k].value:
                return False
    return not stack


def _build(sequence: list[str | int | _Mark], marks: list[_Mark]) -> etree._Element:
    """A holder element whose text and children are the sequence (texts, marks by index or
    given), tags rebuilt as new elements with the original attributes."""
    holder = etree.Element("holder")
    stack = [holder]

    def add_text(s: str) -> None:
        top = stack[-1]
        if len(top):
            top[-1].tail = (top[-1].tail or "") + s
        else:
            top.text = (top.text or "") + s

    for item in sequence:
        mark = marks[item] if isinstance(item, int) else item
        if isinstance(mark, str):
            add_text(mark)
        elif mark.kind in ("entity", "text"):
            add_text(str(mark.value))
        elif mark.kind == "close":
            stack.pop()
        elif mark.kind == "atomic":
            el = copy.deepcopy(mark.value)
            el.tail = None
            stack[-1].append(el)
        else:
            el = mark.value.makeelement(mark.value.tag, dict(mark.value.attrib))
            stack[-1].append(el)
            if mark.kind == "open":
                stack.append(el)
    return holder


def _place(segment: _Segment, holder: etree._Element) -> None:
    """Put the rebuilt run where the original was."""
    block = segment.parent
    if segment.anchor is None:
        block.text = holder.text
        index = 0
    else:
        segment.anchor.tail = holder.text
        index = block.index(segment.anchor) + 1
    for old in segment.children:
        block.remove(old)
    for k, el in enumerate(list(holder)):
        block.insert(index + k, el)


def _choose_style(pieces: list[Piece], styles: tuple[MaskStyle, ...] | list[MaskStyle],
                  protect: bool) -> tuple[Masked, list[_Mark]] | None:
    text = _plain(pieces)
    for style in styles:
        if style.pattern.search(text):
            continue
        masked = _mask(pieces, style, protect)
        if masked is not None:
            return masked
    return None


def _strip(text: str) -> tuple[str, str, str]:
    core = text.strip(" \t\n\r\f")
    if not core:
        return text, "", ""
    start = text.index(core)
    return text[:start], core, text[start + len(core):]


def parse(markup: str) -> tuple[etree._Element, bool, dict[str, str]]:
    """(root, whether a whole document, entity stand-in character -> the entity as written)."""
    stand_ins: dict[str, str] = {}  # entity as written -> its stand-in

    def stand_in(m: re.Match[str]) -> str:
        return stand_ins.setdefault(m.group(0), chr(_PUA_FIRST + len(stand_ins)))

    if not _PUA.search(markup):  # between tags only: lxml percent-encodes non-ASCII in href/src values
        markup = "".join(part if part.startswith("<") else ENTITY.sub(stand_in, part) for part in _TAG.split(markup))
        markup = _CONTROL.sub(stand_in, markup)  # lxml refuses them (or drops them, in attributes)
    else:
        markup = _CONTROL.sub(lambda m: f"&#{ord(m.group(0))};", markup)  # written as references: kept, decoded
    document = _DOCUMENT.match(markup) is not None
    try:
        root = lxml.html.document_fromstring(markup) if document else lxml.html.fragment_fromstring(markup, create_parent="div")
    except etree.ParserError:  # "Document is empty": a doctype alone, nothing to translate
        root = None
    return root, document, {c: e for e, c in stand_ins.items()}


def serialize(root: etree._Element, document: bool, entities: dict[str, str], doctype: str | None = None) -> str:
    if document:
        out = (doctype + "\n" if doctype else "") + lxml.html.tostring(root, encoding="unicode")
    else:
        out = html.escape(root.text or "", quote=False) + "".join(
            lxml.html.tostring(child, encoding="unicode") for child in root)
    return _PUA.sub(lambda m: entities.get(m.group(0), m.group(0)), out) if entities else out


def rewritten(markup: str) -> str:
    """`markup` parsed and written again, untranslated: well-formed, entities as written."""
    root, document, entities = parse(markup)
    doctype = _DOCTYPE.search(markup)
    return markup if root is None else serialize(root, document, entities, doctype.group(0) if doctype else None)


def translate_html(
    markup: str,
    translate: Callable[[list[str]], list[str]],
    protect: bool = True,
    styles: list[MaskStyle] | tuple[MaskStyle, ...] = MASK_STYLES,
) -> tuple[str, list[HtmlWarning]]:
    """Translate an HTML fragment or document (see the module docstring).

    Args:
        translate: texts -> their translations, one each, in order; called at most twice (the
            segments, then the texts of segments whose markup the model did not keep).
        protect: mask printf/brace/ICU placeholders in the text too (tags and entities always are).
        styles: mask styles the model's tokenizer keeps intact (`usable_styles`).

    Returns:
        (the translated HTML, the warnings in document order).
    """
    root, document, entities = parse(markup)
    if root is None:
        return markup, []
    doctype = _DOCTYPE.search(markup)
    warnings: list[HtmlWarning] = []
    if _PUA.search(markup) and not entities:
        warnings.append(HtmlWarning("", "entities", "", "the input holds private-use characters (U+F0000..): "
                                    "its entities were decoded, not kept as written"))
    segments: list[_Segment] = []
    _collect(root, segments)
    segments = [s for s in segments if any(ch.isalnum() for ch in _plain(s.pieces))]
    jobs = []  # (segment, masked, marks, lead, trail)
    for seg in segments:
        chosen = _choose_style(seg.pieces, styles, protect)
        if chosen is None:
            jobs.append((seg, None, [], "", ""))
            continue
        masked, marks = chosen
        lead, core, trail = _strip(masked.text)
        jobs.append((seg, dataclasses.replace(masked, text=core), marks, lead, trail))
    todo = [masked.text for _, masked, *_ in jobs if masked is not None]
    outputs = translate(todo) if todo else []
    it = iter(outputs)
    fallback: list[_Segment] = []
    results: list[tuple[_Segment, list[str | int | _Mark], list[_Mark]]] = []
    for seg, masked, marks, lead, trail in jobs:
        source = _described(seg.pieces)
        if masked is None:
            fallback.append(seg)
            warnings.append(HtmlWarning(source, "unprotected", "", "no mask style fits this segment (it holds every "
                                        "style's tokens): its texts were translated one by one"))
            continue
        out = next(it).strip()
        sequence = _unglue(_split(out, masked.style, len(marks)), masked.glued)
        _, problems = restore(out, masked)
        if not _nests(sequence, marks):
            fallback.append(seg)
            lost = [p.placeholder for p in problems if p.kind != "unexpected"]
            warnings.append(HtmlWarning(source, "markup", "", "the translation did not keep the inline markup"
                                        + (f" ({', '.join(lost[:4])})" if lost else " in order")
                                        + "; the texts between the tags were translated one by one"))
            continue
        warnings += [HtmlWarning(source, p.kind, p.placeholder, p.describe()) for p in problems]
        results.append((seg, [lead, *sequence, trail], marks))
    results += _translate_texts_one_by_one(fallback, translate, protect, styles, warnings)
    for seg, sequence, marks in results:  # attributes first: a rebuilt run copies them
        if seg.attribute is not None:
            seg.parent.set(seg.attribute, _build(sequence, marks).text or "")
    for seg, sequence, marks in results:
        if seg.attribute is None:
            _place(seg, _build(sequence, marks))
    if entities:  # warnings name entities as written, not by their stand-ins
        def written(text: str) -> str:
            return _PUA.sub(lambda m: entities.get(m.group(0), m.group(0)), text)

        warnings = [HtmlWarning(written(w.segment), w.kind, written(w.placeholder), written(w.message)) for w in warnings]
    return serialize(root, document, entities, doctype.group(0) if doctype else None), warnings


def _translate_texts_one_by_one(segments: list[_Segment], translate: Callable[[list[str]], list[str]], protect: bool,
                                styles: list[MaskStyle] | tuple[MaskStyle, ...],
                                warnings: list[HtmlWarning]) -> list[tuple[_Segment, list, list[_Mark]]]:
    """The fallback: each segment's structure kept, each text between two structural marks
    translated alone (entities and text placeholders still masked)."""
    texts: list[tuple[Masked | None, list[_Mark], str, str, list[Piece]]] = []
    layouts: list[list[Piece | tuple[int]]] = []
    for seg in segments:
        layout: list = []
        run: list[Piece] = []
        for piece in [*seg.pieces, None]:
            if piece is None or (isinstance(piece, _Mark) and piece.structural):
                if run:
                    if any(ch.isalnum() for ch in _plain(run)):
                        chosen = _choose_style(run, styles, protect)
                        masked, marks = chosen if chosen is not None else (None, [])
                        if masked is not None:
                            lead, core, trail = _strip(masked.text)
                            masked = dataclasses.replace(masked, text=core)
                        else:
                            lead = trail = ""
                        layout.append((len(texts),))
                        texts.append((masked, marks, lead, trail, run))
                    else:
                        layout += run
                    run = []
                if piece is not None:
                    layout.append(piece)
            else:
                run.append(piece)
        layouts.append(layout)
    todo = [t[0].text for t in texts if t[0] is not None]
    outputs = iter(translate(todo) if todo else [])
    done: list[list] = []
    for masked, marks, lead, trail, run in texts:
        source = _described(run)
        if masked is None:  # left untranslated: no style fits
            done.append(list(run))
            continue
        out = next(outputs).strip()
        _, problems = restore(out, masked)
        warnings += [HtmlWarning(source, p.kind, p.placeholder, p.describe()) for p in problems]
        done.append([lead, *_unglue(_split(out, masked.style, len(marks)), masked.glued), trail])
        done[-1] = [marks[x] if isinstance(x, int) else x for x in done[-1]]
    results = []
    for seg, layout in zip(segments, layouts):
        sequence: list = []
        for item in layout:
            sequence += done[item[0]] if isinstance(item, tuple) else [item]
        results.append((seg, sequence, []))
    return results
