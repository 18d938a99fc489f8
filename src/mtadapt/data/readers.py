"""Streaming readers for parallel text: Moses file pairs, TSV, JSONL and TMX.

All readers stream (a corpus is never loaded whole), apply the empty-side and control-character
policies of `validation.check_pair`, count every dropped pair in a `DataReport`, and raise
`DataError` naming file:line for anything malformed. Files ending in `.gz` are decompressed
on the fly.

    spec = CorpusSpec(paths=("train.de", "train.en"), src_lang="de", tgt_lang="en")
    report = DataReport()
    for example in read_parallel(spec, report):   # ParallelExample(src, tgt, origin)
        ...
    print(report.summary())
"""

from __future__ import annotations

import gzip
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, get_args

from mtadapt.data.validation import (
    DataError,
    DataReport,
    Policy,
    check_pair,
    check_policy,
)
from mtadapt.io import decoded_lines

CorpusFormat = Literal["moses", "tsv", "jsonl", "tmx"]

# Extension -> format, used when `CorpusSpec.format` is not given.
_EXTENSION_FORMATS: dict[str, CorpusFormat] = {
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".tmx": "tmx",
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# TMX inline elements holding native markup codes (not text) or a sub-flow (a footnote);
# their content is skipped, their tail (the text after them) is kept.
_TMX_SKIPPED_INLINE = {"bpt", "ept", "ph", "it", "ut", "sub"}


@dataclass(frozen=True, slots=True)
class ParallelExample:
    """One sentence pair; `origin` is `path:line` (for TMX, `path:tuN`, the 1-based <tu> index)."""

    src: str
    tgt: str
    origin: str


@dataclass(frozen=True)
class CorpusSpec:
    """Where a parallel corpus lives and how to read it.

    Attributes:
        paths: the file(s). moses: `(src_file, tgt_file)`, or one prefix `train` meaning
            `train.{src_lang}` + `train.{tgt_lang}`; tsv, jsonl, tmx: one file.
            A single `str`/`Path` is accepted.
        src_lang: source language code (`de`); picks the TMX <tuv> and the Moses suffix.
        tgt_lang: target language code (`en`).
        format: "moses", "tsv", "jsonl" or "tmx"; None infers it: two paths -> moses,
            `.tsv` -> tsv, `.jsonl`/`.ndjson` -> jsonl, `.tmx` -> tmx (a `.gz` suffix is
            ignored), one path with no such extension -> a moses prefix.
        src_key: JSONL key of the source text.
        tgt_key: JSONL key of the target text.
        empty: pairs with an empty side (or a TMX <tu> lacking a language): "drop" (counted)
            or "error".
        control_chars: pairs with a control character (tab, CR, NUL, C1, ...; the TSV column
            tab excepted): "drop" (counted) or "error".

    Raises:
        DataError: on construction, listing every invalid field at once.
    """

    paths: tuple[Path, ...]
    src_lang: str
    tgt_lang: str
    format: CorpusFormat | None = None
    src_key: str = "src"
    tgt_key: str = "tgt"
    empty: Policy = "drop"
    control_chars: Policy = "drop"

    def __post_init__(self) -> None:
        raw_paths = self.paths
        if isinstance(raw_paths, (str, os.PathLike)):
            raw_paths = (raw_paths,)
        object.__setattr__(self, "paths", tuple(Path(p) for p in raw_paths))
        problems = [
            message
            for message in (
                check_policy("empty", self.empty),
                check_policy("control_chars", self.control_chars),
            )
            if message
        ]
        if self.format is not None and self.format not in get_args(CorpusFormat):
            problems.append(
                f"`format` must be one of {', '.join(map(repr, get_args(CorpusFormat)))} "
                f"or None (inferred), got {self.format!r}"
            )
        if not self.paths:
            problems.append("`paths` is empty; give the corpus file(s)")
        elif self.format == "moses" and len(self.paths) > 2:
            problems.append(f"moses takes (src_file, tgt_file) or one prefix, got {len(self.paths)} paths")
        elif self.format in ("tsv", "jsonl", "tmx") and len(self.paths) != 1:
            problems.append(f"{self.format} takes exactly one path, got {len(self.paths)}")
        if not self.src_lang or not self.tgt_lang:
            problems.append("`src_lang` and `tgt_lang` must be non-empty language codes")
        if self.format == "jsonl" and self.src_key == self.tgt_key:
            problems.append(f"`src_key` and `tgt_key` are both {self.src_key!r}")
        if problems:
            raise DataError("invalid CorpusSpec:\n  " + "\n  ".join(problems))

    def resolved_format(self) -> CorpusFormat:
        """The format, inferred from the paths when `format` is None."""
        if self.format is not None:
            return self.format
        if len(self.paths) == 2:
            return "moses"
        if len(self.paths) > 2:
            raise DataError(f"cannot infer the format of {len(self.paths)} paths; set `format`")
        suffixes = [s.lower() for s in self.paths[0].suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes.pop()
        if suffixes and suffixes[-1] in _EXTENSION_FORMATS:
            return _EXTENSION_FORMATS[suffixes[-1]]
        return "moses"  # one path without a known extension: a prefix such as `data/train`

    def moses_paths(self) -> tuple[Path, Path]:
        """(src_file, tgt_file) of a Moses pair, expanding a prefix with the language codes."""
        if len(self.paths) == 2:
            return self.paths[0], self.paths[1]
        prefix = str(self.paths[0])
        return Path(f"{prefix}.{self.src_lang}"), Path(f"{prefix}.{self.tgt_lang}")


def read_parallel(spec: CorpusSpec, report: DataReport | None = None) -> Iterator[ParallelExample]:
    """Streams the pairs of a corpus, checked and with drops counted.

    Args:
        spec: the corpus.
        report: drops and reads are counted here; pass one to see them (a fresh one is
            used otherwise).

    Yields:
        ParallelExample for each kept pair, in file order.

    Raises:
        DataError: malformed input, or a problem whose policy is "error"; names file:line.
            Raised when the reader reaches the problem (the stream is lazy); call
            `scan_corpus` first to check a whole corpus before training.
    """
    report = report if report is not None else DataReport()
    fmt = spec.resolved_format()
    policies = {"empty": spec.empty, "control_chars": spec.control_chars}
    if fmt == "moses":
        src_path, tgt_path = spec.moses_paths()
        return read_moses(src_path, tgt_path, report=report, **policies)
    if fmt == "tsv":
        return read_tsv(spec.paths[0], report=report, **policies)
    if fmt == "jsonl":
        return read_jsonl(
            spec.paths[0], src_key=spec.src_key, tgt_key=spec.tgt_key, report=report, **policies
        )
    return read_tmx(spec.paths[0], spec.src_lang, spec.tgt_lang, report=report, **policies)


def scan_corpus(spec: CorpusSpec) -> DataReport:
    """Reads a whole corpus once, discarding the pairs: validates early and returns the counts.

    Raises:
        DataError: the first malformed line, or a problem whose policy is "error".
    """
    report = DataReport()
    for _ in read_parallel(spec, report):
        pass
    return report


def _open_binary(path: Path) -> IO[bytes]:
    if path.is_dir():
        raise DataError(f"{path}: is a folder; a corpus path names a file (or a Moses prefix such as data/train)")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    # Binary on purpose: text mode would also split lines on \r, \x0b, \x1c, U+2028 ...,
    # silently shifting one side of a Moses pair against the other.
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _decoded_lines(stream: IO[bytes], path: str) -> Iterator[tuple[int, str]]:
    """Yields (1-based line number, decoded line without its line ending)."""
    return decoded_lines(stream, path)


def read_moses(
    src_path: str | Path,
    tgt_path: str | Path,
    *,
    report: DataReport,
    empty: Policy = "drop",
    control_chars: Policy = "drop",
) -> Iterator[ParallelExample]:
    """Streams line-aligned files (`train.de` + `train.en`); origin is `src_path:line`.

    Raises:
        DataError: invalid UTF-8, a policy error, or different line counts (names the longer
            file and both counts; raised when the shorter file ends).
    """
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    with _open_binary(src_path) as src_stream, _open_binary(tgt_path) as tgt_stream:
        src_lines = _decoded_lines(src_stream, str(src_path))
        tgt_lines = _decoded_lines(tgt_stream, str(tgt_path))
        n_lines = 0
        while True:
            src_item = next(src_lines, None)
            tgt_item = next(tgt_lines, None)
            if src_item is None or tgt_item is None:
                if src_item is None and tgt_item is None:
                    return
                longer, stream = (src_path, src_stream) if tgt_item is None else (tgt_path, tgt_stream)
                shorter = tgt_path if longer == src_path else src_path
                # +1: the line just read from the longer file.
                longer_count = n_lines + 1 + sum(1 for _ in stream)
                raise DataError(
                    f"{longer} is longer than {shorter}: {longer} has {longer_count} lines, "
                    f"{shorter} has {n_lines}; first unpaired line is {longer}:{n_lines + 1}"
                )
            n_lines += 1
            (line_no, src), (_, tgt) = src_item, tgt_item
            report.read += 1
            origin = f"{src_path}:{line_no}"
            if check_pair(
                src, tgt, origin, empty=empty, control_chars=control_chars, report=report,
                tgt_origin=f"{tgt_path}:{line_no}",
            ):
                yield ParallelExample(src, tgt, origin)


def read_tsv(
    path: str | Path,
    *,
    report: DataReport,
    empty: Policy = "drop",
    control_chars: Policy = "drop",
) -> Iterator[ParallelExample]:
    """Streams `src<TAB>tgt` lines; origin is `path:line`.

    Raises:
        DataError: a line without exactly one tab, invalid UTF-8, or a policy error.
    """
    path = Path(path)
    with _open_binary(path) as stream:
        for line_no, line in _decoded_lines(stream, str(path)):
            origin = f"{path}:{line_no}"
            columns = line.split("\t")
            if len(columns) != 2:
                raise DataError(
                    f"{origin}: expected 2 tab-separated columns (src<TAB>tgt), found {len(columns)}"
                )
            report.read += 1
            src, tgt = columns
            if check_pair(src, tgt, origin, empty=empty, control_chars=control_chars, report=report):
                yield ParallelExample(src, tgt, origin)


def read_jsonl(
    path: str | Path,
    *,
    report: DataReport,
    src_key: str = "src",
    tgt_key: str = "tgt",
    empty: Policy = "drop",
    control_chars: Policy = "drop",
) -> Iterator[ParallelExample]:
    """Streams one JSON object per line, `{"src": ..., "tgt": ...}`; origin is `path:line`.

    Blank lines are skipped and counted as `blank_line`.

    Raises:
        DataError: malformed JSON, a non-object line, a missing key or non-string value,
            invalid UTF-8, or a policy error.
    """
    path = Path(path)
    with _open_binary(path) as stream:
        for line_no, line in _decoded_lines(stream, str(path)):
            origin = f"{path}:{line_no}"
            report.read += 1
            if not line.strip():
                report.record_drop("blank_line", origin)
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{origin}: malformed JSON at column {err.colno}: {err.msg}") from None
            if not isinstance(record, dict):
                raise DataError(f"{origin}: expected a JSON object, got {type(record).__name__}")
            missing = [key for key in (src_key, tgt_key) if key not in record]
            if missing:
                raise DataError(
                    f"{origin}: missing key(s) {', '.join(map(repr, missing))}; keys present: "
                    f"{', '.join(map(repr, record)) or 'none'} (set `src_key`/`tgt_key`)"
                )
            src, tgt = record[src_key], record[tgt_key]
            for key, value in ((src_key, src), (tgt_key, tgt)):
                if not isinstance(value, str):
                    raise DataError(f"{origin}: {key!r} must be a string, got {type(value).__name__}")
            if check_pair(src, tgt, origin, empty=empty, control_chars=control_chars, report=report):
                yield ParallelExample(src, tgt, origin)


def _local_name(tag: str) -> str:
    # Tolerate a namespaced TMX (`{ns}tu`): match on the local name only.
    return tag.rsplit("}", 1)[-1]


def _normalize_lang(code: str) -> str:
    return code.strip().lower().replace("_", "-")


def _tuv_lang(tuv: ET.Element) -> str | None:
    # TMX 1.4 uses xml:lang; TMX 1.1/1.2 files use a plain `lang` attribute.
    code = tuv.get(_XML_LANG) or tuv.get("lang")
    return _normalize_lang(code) if code else None


def _lang_matches(wanted: str, found: str) -> bool:
    """Region-tolerant: `pt` matches `pt-BR`, `pt-BR` matches `pt`, `pt-BR` does not match `pt-PT`."""
    return found == wanted or found.startswith(wanted + "-") or wanted.startswith(found + "-")


def _seg_text(seg: ET.Element) -> str:
    """Text of a <seg>, keeping <hi> text and dropping inline markup codes (<bpt>, <ph>, ...)."""
    parts = [seg.text or ""]
    for child in seg:
        if _local_name(child.tag) not in _TMX_SKIPPED_INLINE:
            parts.append(_seg_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _pick_tuv_text(tuvs: list[tuple[str, str]], wanted: str) -> str | None:
    """Exact language match first, else the first region-tolerant match, else None."""
    for lang, text in tuvs:
        if lang == wanted:
            return text
    for lang, text in tuvs:
        if _lang_matches(wanted, lang):
            return text
    return None


def read_tmx(
    path: str | Path,
    src_lang: str,
    tgt_lang: str,
    *,
    report: DataReport,
    empty: Policy = "drop",
    control_chars: Policy = "drop",
) -> Iterator[ParallelExample]:
    """Streams the <tu> units of a TMX file; origin is `path:tuN` (1-based <tu> index).

    Languages match case-insensitively and region-tolerantly (`pt` picks `pt-BR`); an exact
    match wins over a region variant. A <tu> lacking one language follows the `empty` policy
    (counted as `missing_language`). Parsed <tu> elements are cleared, so memory stays flat.

    Raises:
        DataError: malformed XML (with line), a policy error, or a language found in no <tu>
            of the file (names the languages present).
    """
    path = Path(path)
    wanted_src, wanted_tgt = _normalize_lang(src_lang), _normalize_lang(tgt_lang)
    languages_seen: set[str] = set()
    n_tu = n_paired = 0
    with _open_binary(path) as stream:
        parent: ET.Element | None = None
        try:
            for event, elem in ET.iterparse(stream, events=("start", "end")):
                name = _local_name(elem.tag)
                if event == "start":
                    if name == "body":
                        parent = elem
                    continue
                if name != "tu":
                    continue
                n_tu += 1
                origin = f"{path}:tu{n_tu}"
                tuvs: list[tuple[str, str]] = []
                for tuv in elem:
                    if _local_name(tuv.tag) != "tuv":
                        continue
                    lang = _tuv_lang(tuv)
                    seg = next((c for c in tuv if _local_name(c.tag) == "seg"), None)
                    if lang is None or seg is None:
                        continue
                    languages_seen.add(lang)
                    tuvs.append((lang, _seg_text(seg)))
                # Clear the <tu> and detach it from <body>: iterparse builds the whole tree
                # otherwise, and a multi-GB TMX would be held in memory.
                elem.clear()
                if parent is not None:
                    parent.clear()
                report.read += 1
                src = _pick_tuv_text(tuvs, wanted_src)
                tgt = _pick_tuv_text(tuvs, wanted_tgt)
                if src is None or tgt is None:
                    missing = src_lang if src is None else tgt_lang
                    if empty == "error":
                        raise DataError(
                            f"{origin}: <tu> has no <tuv> for language {missing!r}; languages "
                            f"in it: {', '.join(lang for lang, _ in tuvs) or 'none'}"
                        )
                    report.record_drop("missing_language", origin)
                    continue
                n_paired += 1
                if check_pair(src, tgt, origin, empty=empty, control_chars=control_chars, report=report):
                    yield ParallelExample(src, tgt, origin)
        except ET.ParseError as err:
            line, column = err.position
            raise DataError(f"{path}:{line}: malformed TMX/XML at column {column}: {err}") from None
    if n_tu and not n_paired:
        for wanted, code in ((wanted_src, src_lang), (wanted_tgt, tgt_lang)):
            if not any(_lang_matches(wanted, lang) for lang in languages_seen):
                raise DataError(
                    f"{path}: language {code!r} is in none of its {n_tu} <tu>; languages found: "
                    f"{', '.join(sorted(languages_seen)) or 'none'}"
                )
