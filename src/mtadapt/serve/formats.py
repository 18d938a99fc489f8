"""Formatted text through the server: placeholders protected, HTML block by block, files.

    format "text"  each text one segment; with protect_placeholders (default on) printf,
                   brace, ICU, entities and inline tags masked and restored
                   (`mtadapt.data.placeholders`)
    format "html"  `mtadapt.data.html_markup`: block elements' text, inline markup in place,
                   tags and entities always masked (they are markup); protect_placeholders
                   masks printf/brace/ICU in the text too
    files          .txt (each line), .html/.htm (a document or fragment), .po/.pot (polib via
                   `mtadapt.data.po_catalog`: untranslated entries filled and marked fuzzy)

Protection is on by default for every format: a text without placeholders is sent unchanged,
so it costs nothing there, and a product string whose `%s` the model dropped breaks the
product. Every placeholder that did not come through exactly once is a warning in the answer
and counts in `mtadapt_placeholder_problems_total{kind}`; nothing is dropped silently.

HTML and files translate in a thread (lxml and polib are synchronous); their model calls come
back to the event loop (`run_coroutine_threadsafe`), in chunks of at most `max_texts`, and
queue like any request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from mtadapt.data.html_markup import HtmlWarning, translate_html
from mtadapt.data.placeholders import MaskStyle, PlaceholderProblem, mask, restore, usable_styles
from mtadapt.serve.schemas import ApiError

FILE_FORMATS = {".txt": "text", ".html": "html", ".htm": "html", ".po": "po", ".pot": "po"}
"""Extensions `/translate_file` accepts, and how each is translated."""


@dataclass
class Request:
    """What one request translates with, and what it has used so far.

    Attributes:
        pair, adapter, num_beams, max_length_factor: as `Server.translate` takes them.
        field: The request field texts come from (in error messages).
        styles: Mask styles this pair's tokenizer keeps intact.
        jobs: The worker jobs of the request, in order (for timings).
    """

    pair: tuple[str, str]
    adapter: str | None
    num_beams: int
    max_length_factor: float
    field: str
    styles: list[MaskStyle]
    jobs: list[Any] = field(default_factory=list)


def pair_styles(engine: Any, pair: tuple[str, str], cache: dict) -> list[MaskStyle]:
    """The mask styles the pair's tokenizer encodes and decodes intact (computed once a pair)."""
    if pair not in cache:
        codec = engine.codecs[pair]
        cache[pair] = usable_styles(lambda text: codec.decode(codec.encode_targets([text]))[0])
    return cache[pair]


def _warning(where: str, kind: str, placeholder: str, message: str) -> dict[str, str]:
    return {"where": where, "kind": kind, "placeholder": placeholder, "message": f"{where}: {message}"}


def _problem_warnings(where: str, problems: list[PlaceholderProblem]) -> list[dict[str, str]]:
    return [_warning(where, p.kind, p.placeholder, p.describe()) for p in problems]


def _html_warnings(where: str, warnings: list[HtmlWarning]) -> list[dict[str, str]]:
    def at(w: HtmlWarning) -> str:
        segment = w.segment if len(w.segment) <= 60 else w.segment[:57] + "..."
        return f"{where}, segment {segment!r}" if segment else where

    return [_warning(at(w), w.kind, w.placeholder, w.message) for w in warnings]


async def translate_texts(server: Any, texts: list[str], fmt: str, protect: bool, request: Request,
                          rows: list[int] | None = None, num_return: int = 1) -> tuple[list[list[str]], list[dict]]:
    """Each text's `num_return` best translations (format "text"; "html" gives the best only)
    and the warnings of the best ones (`where` = field[row], rows: the texts' indices in the
    request, default 0, 1, ...)."""
    rows = list(range(len(texts))) if rows is None else rows
    outputs: list[list[str]] = []
    warnings: list[dict] = []
    if fmt == "html":
        for row, text in zip(rows, texts):
            out, found = await in_thread(server, request, lambda model, text=text: translate_html(text, model, protect, request.styles))
            outputs.append([out])
            warnings += _html_warnings(f"{request.field}[{row}]", found)
    else:
        masks = [mask(t, request.styles) if protect else None for t in texts]
        sources = [m.text if m else t for m, t in zip(masks, texts)]
        if num_return == 1:
            translations, job = await server.translate(sources, request.field, request.pair, request.adapter,
                                                       request.num_beams, request.max_length_factor)
            nbest = [[t] for t in translations]
        else:
            nbest, job = await server.translate_nbest(sources, request.field, request.pair, request.adapter,
                                                      request.num_beams, request.max_length_factor, num_return)
        request.jobs.append(job)
        for row, m, hypotheses in zip(rows, masks, nbest):
            restored = [restore(h, m) if m is not None else (h, []) for h in hypotheses]
            outputs.append([text for text, _ in restored])
            warnings += _problem_warnings(f"{request.field}[{row}]", restored[0][1])
    server.metrics.placeholder_problems([w["kind"] for w in warnings])
    return outputs, warnings


async def in_thread(server: Any, request: Request, work: Callable[[Callable[[list[str]], list[str]]], Any]) -> Any:
    """Run `work(model)` in a thread, where `model(texts)` translates through the server's queue
    in chunks of `max_texts` (a text over the limits is a 400 naming it)."""
    loop = asyncio.get_running_loop()
    limit = server.config.limits.max_texts

    def model(texts: list[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(texts), limit):
            chunk = texts[start:start + limit]
            call = server.translate(chunk, request.field, request.pair, request.adapter, request.num_beams, request.max_length_factor)
            try:
                translations, job = asyncio.run_coroutine_threadsafe(call, loop).result()
            except ApiError as err:
                if err.status != 400:
                    raise
                raise ApiError(400, request.field, f"{request.field}: a segment ({chunk[0][:40]!r} ...) is over the limits: "
                                                   f"{err.message.split(': ', 1)[-1]}; split the text") from err
            request.jobs.append(job)
            out += translations
        return out

    return await asyncio.to_thread(work, model)


def file_format(filename: str) -> str:
    """The format of an uploaded file, by its extension.

    Raises:
        ApiError: 400 for an extension not in FILE_FORMATS.
    """
    ext = PurePath(filename).suffix.lower()
    if ext not in FILE_FORMATS:
        raise ApiError(400, "file", f"file: {filename!r} has an unsupported extension {ext or '(none)'!r}; "
                                    f"send one of {', '.join(FILE_FORMATS)}")
    return FILE_FORMATS[ext]


def decode_upload(data: bytes, filename: str) -> str:
    """UTF-8 text of an uploaded file (a BOM dropped).

    Raises:
        ApiError: 400 naming the line and byte of the first invalid UTF-8 sequence.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ApiError(400, "file", f"file: {filename} is not valid UTF-8 (line {line}, byte {err.start}); "
                                    "send UTF-8 text") from None


def _translate_lines(text: str, model: Callable[[list[str]], list[str]], protect: bool,
                     styles: list[MaskStyle]) -> tuple[str, list[dict]]:
    """Each non-blank line one segment; its leading/trailing whitespace and the line endings kept."""
    lines = text.split("\n")
    cores = [(i, line.strip()) for i, line in enumerate(lines) if line.strip()]
    masks = [mask(core, styles) if protect else None for _, core in cores]
    outs = model([m.text if m else core for m, (_, core) in zip(masks, cores)]) if cores else []
    warnings: list[dict] = []
    for (i, core), m, out in zip(cores, masks, outs):
        restored, problems = restore(out.strip(), m) if m is not None else (out.strip(), [])
        start = lines[i].index(core)
        lines[i] = lines[i][:start] + restored + lines[i][start + len(core):]
        warnings += _problem_warnings(f"line {i + 1}", problems)
    return "\n".join(lines), warnings


def _translate_po(text: str, filename: str, model: Callable[[list[str]], list[str]], protect: bool,
                  styles: list[MaskStyle]) -> tuple[str, list[dict]]:
    import polib

    from mtadapt.data.po_catalog import translate_catalog

    try:
        catalog = polib.pofile(text, wrapwidth=78)
    except (OSError, ValueError) as err:  # polib: "Syntax error in po file (line 7)"
        raise ApiError(400, "file", f"file: {filename} is not a valid gettext catalog: {err}") from None
    _, found = translate_catalog(catalog, model, protect=protect, styles=styles)
    return str(catalog), [_warning(f"line {w.line}", w.problem.kind, w.problem.placeholder, w.describe()) for w in found]


async def translate_file(server: Any, data: bytes, filename: str, protect: bool, request: Request) -> tuple[bytes, list[dict]]:
    """The translated file's bytes (UTF-8) and its warnings (`where` = its line or segment).

    Raises:
        ApiError: 400 for an unknown extension, text that is not UTF-8, a .po syntax error
            (naming the line), or a segment over the request limits.
    """
    fmt = file_format(filename)
    text = decode_upload(data, filename)
    if fmt == "html":
        out, found = await in_thread(server, request, lambda model: translate_html(text, model, protect, request.styles))
        warnings = _html_warnings(filename, found)
    elif fmt == "po":
        out, warnings = await in_thread(server, request, lambda model: _translate_po(text, filename, model, protect, request.styles))
    else:
        out, warnings = await in_thread(server, request, lambda model: _translate_lines(text, model, protect, request.styles))
    server.metrics.placeholder_problems([w["kind"] for w in warnings])
    return out.encode("utf-8"), warnings
