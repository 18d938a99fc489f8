"""Readers, validation policies and length filters of mtadapt.data, on tiny files in tmp_path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mtadapt.data import (
    CorpusSpec,
    DataError,
    DataReport,
    LengthFilterConfig,
    ParallelExample,
    filter_by_length,
    read_parallel,
    scan_corpus,
)


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read_all(spec: CorpusSpec) -> tuple[list[ParallelExample], DataReport]:
    report = DataReport()
    return list(read_parallel(spec, report)), report


# ---------------------------------------------------------------- Moses


def test_moses_pair_happy_path_with_prefix_and_crlf(tmp_path: Path) -> None:
    write(tmp_path / "train.de", "\ufeffHallo Welt\r\nGuten Morgen\n")
    write(tmp_path / "train.en", "Hello world\nGood morning\n")
    examples, report = read_all(CorpusSpec(paths=str(tmp_path / "train"), src_lang="de", tgt_lang="en"))
    assert examples == [
        ParallelExample("Hallo Welt", "Hello world", f"{tmp_path / 'train.de'}:1"),
        ParallelExample("Guten Morgen", "Good morning", f"{tmp_path / 'train.de'}:2"),
    ]
    assert (report.read, report.kept) == (2, 2)


def test_moses_does_not_split_on_unicode_line_separators(tmp_path: Path) -> None:
    # U+2028 and \x0c would split the line in text mode and misalign the pair.
    src = write(tmp_path / "a.de", "eins\u2028zwei\nvier\n")
    tgt = write(tmp_path / "a.en", "one two\nfour\n")
    examples, _ = read_all(CorpusSpec(paths=(src, tgt), src_lang="de", tgt_lang="en"))
    assert [e.tgt for e in examples] == ["one two", "four"]
    assert examples[0].src == "eins\u2028zwei"


@pytest.mark.parametrize("longer_side", ["src", "tgt"])
def test_moses_mismatched_line_counts_names_longer_file_and_counts(tmp_path: Path, longer_side: str) -> None:
    long_text, short_text = "a\nb\nc\nd\n", "a\nb\n"
    src = write(tmp_path / "x.de", long_text if longer_side == "src" else short_text)
    tgt = write(tmp_path / "x.en", short_text if longer_side == "src" else long_text)
    longer, shorter = (src, tgt) if longer_side == "src" else (tgt, src)
    with pytest.raises(DataError) as err:
        read_all(CorpusSpec(paths=(src, tgt), src_lang="de", tgt_lang="en"))
    message = str(err.value)
    assert f"{longer} is longer than {shorter}" in message
    assert f"{longer} has 4 lines, {shorter} has 2" in message
    assert f"{longer}:3" in message


def test_invalid_utf8_names_file_line_and_byte_offset(tmp_path: Path) -> None:
    src = write(tmp_path / "b.de", b"gut\nsch\xf6n\n")  # Latin-1 o-umlaut
    tgt = write(tmp_path / "b.en", b"good\nnice\n")
    with pytest.raises(DataError, match=rf"{src}:2: invalid UTF-8 at byte offset 7 of the file \(byte 3 of the line\)"):
        read_all(CorpusSpec(paths=(src, tgt), src_lang="de", tgt_lang="en"))


def test_missing_file_is_named(tmp_path: Path) -> None:
    write(tmp_path / "c.de", "x\n")
    with pytest.raises(DataError, match=r"c\.en: no such file"):
        read_all(CorpusSpec(paths=tmp_path / "c", src_lang="de", tgt_lang="en", format="moses"))


# ---------------------------------------------------------------- policies


def test_empty_and_control_char_drops_are_counted(tmp_path: Path) -> None:
    src = write(tmp_path / "d.de", "eins\n\nzwei\ndr\x00ei\nvier\nfünf\x85\n")
    tgt = write(tmp_path / "d.en", "one\ntwo\n   \nthree\nfo\tur\nfive\n")
    examples, report = read_all(CorpusSpec(paths=(src, tgt), src_lang="de", tgt_lang="en"))
    assert [e.src for e in examples] == ["eins"]
    assert report.read == 6 and report.kept == 1
    assert report.dropped == {"empty_src": 1, "empty_tgt": 1, "control_char": 3}
    assert report.drop_origins["empty_src"] == [f"{src}:2"]
    summary = report.summary()
    assert summary.startswith("read 6 pairs, kept 1 (16.7%); dropped 5: control_char 3")
    # each drop names the file holding the problem: the empty target is in the target file
    assert f"empty_tgt 1 (e.g. {tgt}:3)" in summary
    assert report.drop_origins["control_char"] == [f"{src}:4", f"{tgt}:5", f"{src}:6"]


def test_empty_error_policy_names_target_file_and_line(tmp_path: Path) -> None:
    src = write(tmp_path / "e.de", "eins\nzwei\n")
    tgt = write(tmp_path / "e.en", "one\n\n")
    spec = CorpusSpec(paths=(src, tgt), src_lang="de", tgt_lang="en", empty="error")
    with pytest.raises(DataError, match=rf"{tgt}:2: empty tgt side"):
        read_all(spec)


def test_control_char_error_policy(tmp_path: Path) -> None:
    path = write(tmp_path / "f.tsv", "a\tb\nc\x07\td\n")
    with pytest.raises(DataError, match=rf"{path}:2: control character U\+0007 in the src side"):
        read_all(CorpusSpec(paths=path, src_lang="x", tgt_lang="y", control_chars="error"))


def test_spec_reports_all_invalid_fields_at_once() -> None:
    with pytest.raises(DataError) as err:
        CorpusSpec(paths=("a.tsv", "b.tsv"), src_lang="", tgt_lang="en", format="tsv",
                   empty="skip", control_chars="keep")  # type: ignore[arg-type]
    message = str(err.value)
    for expected in ("`empty` must be one of 'drop', 'error'", "`control_chars`",
                     "tsv takes exactly one path, got 2", "`src_lang`"):
        assert expected in message


def test_scan_corpus_returns_counts(tmp_path: Path) -> None:
    path = write(tmp_path / "g.tsv", "a\tb\n\tb\nc\td\n")
    report = scan_corpus(CorpusSpec(paths=path, src_lang="x", tgt_lang="y"))
    assert (report.read, report.kept, dict(report.dropped)) == (3, 2, {"empty_src": 1})


# ---------------------------------------------------------------- TSV


def test_tsv_happy_path_gzip(tmp_path: Path) -> None:
    path = tmp_path / "h.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("Haus\thouse\nBaum\ttree\n")
    spec = CorpusSpec(paths=path, src_lang="de", tgt_lang="en")
    assert spec.resolved_format() == "tsv"
    examples, _ = read_all(spec)
    assert examples == [ParallelExample("Haus", "house", f"{path}:1"), ParallelExample("Baum", "tree", f"{path}:2")]


@pytest.mark.parametrize("bad_line, columns", [("only one column", 1), ("a\tb\tc", 3)])
def test_tsv_wrong_column_count_names_line(tmp_path: Path, bad_line: str, columns: int) -> None:
    path = write(tmp_path / "i.tsv", f"a\tb\n{bad_line}\n")
    with pytest.raises(DataError, match=rf"{path}:2: expected 2 tab-separated columns .* found {columns}"):
        read_all(CorpusSpec(paths=path, src_lang="x", tgt_lang="y"))


# ---------------------------------------------------------------- JSONL


def test_jsonl_happy_path_custom_keys_and_blank_line(tmp_path: Path) -> None:
    lines = [json.dumps({"de": "Hallo", "en": "Hi"}), "", json.dumps({"de": "Tschüss", "en": "Bye", "id": 3})]
    path = write(tmp_path / "j.jsonl", "\n".join(lines) + "\n")
    examples, report = read_all(CorpusSpec(paths=path, src_lang="de", tgt_lang="en", src_key="de", tgt_key="en"))
    assert examples == [ParallelExample("Hallo", "Hi", f"{path}:1"), ParallelExample("Tschüss", "Bye", f"{path}:3")]
    assert report.dropped == {"blank_line": 1}


def test_jsonl_malformed_line_number(tmp_path: Path) -> None:
    path = write(tmp_path / "k.jsonl", '{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": }\n')
    with pytest.raises(DataError, match=rf"{path}:2: malformed JSON at column 21"):
        read_all(CorpusSpec(paths=path, src_lang="x", tgt_lang="y"))


def test_jsonl_missing_key_lists_present_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "l.jsonl", '{"source": "a", "tgt": "b"}\n')
    with pytest.raises(DataError, match=rf"{path}:1: missing key\(s\) 'src'; keys present: 'source', 'tgt'"):
        read_all(CorpusSpec(paths=path, src_lang="x", tgt_lang="y"))


def test_jsonl_non_string_value(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", '{"src": "a", "tgt": null}\n')
    with pytest.raises(DataError, match=rf"{path}:1: 'tgt' must be a string"):
        read_all(CorpusSpec(paths=path, src_lang="x", tgt_lang="y"))


# ---------------------------------------------------------------- TMX

TMX = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tmx SYSTEM "tmx14.dtd">
<tmx version="1.4">
  <header srclang="en" datatype="plaintext" segtype="sentence" adminlang="en" o-tmf="x" creationtool="t" creationtoolversion="1"/>
  <body>
    <tu><tuv xml:lang="EN-us"><seg>Open the <bpt i="1">&lt;b&gt;</bpt>file<ept i="1">&lt;/b&gt;</ept>.</seg></tuv>
        <tuv xml:lang="pt-BR"><seg>Abra o <hi>arquivo</hi>.</seg></tuv></tu>
    <tu><tuv xml:lang="en"><seg>Save</seg></tuv><tuv xml:lang="pt-PT"><seg>Guardar</seg></tuv>
        <tuv xml:lang="pt"><seg>Salvar</seg></tuv></tu>
    <tu><tuv lang="EN"><seg>Only English</seg></tuv></tu>
    <tu><tuv xml:lang="en"><seg>Close</seg></tuv><tuv xml:lang="pt-br"><seg>Fechar</seg></tuv></tu>
  </body>
</tmx>
"""


def test_tmx_happy_path_languages_case_and_region_tolerant(tmp_path: Path) -> None:
    path = write(tmp_path / "n.tmx", TMX)
    examples, report = read_all(CorpusSpec(paths=path, src_lang="en", tgt_lang="PT"))
    assert examples == [
        ParallelExample("Open the file.", "Abra o arquivo.", f"{path}:tu1"),
        ParallelExample("Save", "Salvar", f"{path}:tu2"),  # exact `pt` beats `pt-PT`
        ParallelExample("Close", "Fechar", f"{path}:tu4"),
    ]
    assert report.read == 4 and report.dropped == {"missing_language": 1}
    assert report.drop_origins["missing_language"] == [f"{path}:tu3"]


def test_tmx_region_specific_request(tmp_path: Path) -> None:
    path = write(tmp_path / "o.tmx", TMX)
    examples, _ = read_all(CorpusSpec(paths=path, src_lang="pt_PT", tgt_lang="en"))
    # pt-PT exact in tu2, plain `pt` cannot be told apart elsewhere and is accepted; pt-BR is not.
    assert [(e.src, e.origin.rsplit(":", 1)[1]) for e in examples] == [("Guardar", "tu2")]


def test_tmx_language_missing_from_file(tmp_path: Path) -> None:
    path = write(tmp_path / "p.tmx", TMX)
    with pytest.raises(DataError, match=rf"{path}: language 'fr' is in none of its 4 <tu>; languages found: en, en-us, pt, pt-br, pt-pt"):
        read_all(CorpusSpec(paths=path, src_lang="en", tgt_lang="fr"))


def test_tmx_language_missing_in_one_tu_with_error_policy(tmp_path: Path) -> None:
    path = write(tmp_path / "q.tmx", TMX)
    with pytest.raises(DataError, match=rf"{path}:tu3: <tu> has no <tuv> for language 'pt'"):
        read_all(CorpusSpec(paths=path, src_lang="en", tgt_lang="pt", empty="error"))


def test_tmx_malformed_xml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.tmx", "<tmx>\n<body>\n<tu><tuv xml:lang='en'><seg>x</tuv></tu>\n</body></tmx>\n")
    with pytest.raises(DataError, match=rf"{path}:3: malformed TMX/XML"):
        read_all(CorpusSpec(paths=path, src_lang="en", tgt_lang="de"))


# ---------------------------------------------------------------- filters


def test_length_filters_count_each_reason_once() -> None:
    src = [[1] * n for n in (5, 0, 10, 2, 300, 4)]
    tgt = [[1] * n for n in (6, 3, 2, 2, 300, 12)]
    origins = [f"f:{i + 1}" for i in range(6)]
    report = DataReport(read=6)
    kept = filter_by_length(src, tgt, LengthFilterConfig(min_tokens=1, max_tokens=256, max_length_ratio=3.0), report, origins)
    # 1: empty src -> too_short; 2: 10/2 = 5 > 3 -> ratio; 4: 300 -> too_long; 5: 12/4 = 3 -> kept
    assert kept == [0, 3, 5]
    assert report.dropped == {"too_short": 1, "too_long": 1, "length_ratio": 1}
    assert report.drop_origins["length_ratio"] == ["f:3"]
    assert report.kept == 3


def test_length_filter_config_validation() -> None:
    with pytest.raises(DataError, match="`max_length_ratio` must be >= 1.0"):
        LengthFilterConfig(max_length_ratio=0.5)


def test_tmx_memory_stays_flat_with_corpus_size(tmp_path: Path) -> None:
    """Parsed <tu> must be cleared and detached; an 8x larger file may not raise the peak."""
    import tracemalloc

    def peak_bytes(n_tu: int) -> int:
        tus = "".join(
            f'<tu><tuv xml:lang="en"><seg>sentence {i}</seg></tuv><tuv xml:lang="de"><seg>Satz {i}</seg></tuv></tu>\n'
            for i in range(n_tu)
        )
        path = write(tmp_path / f"big{n_tu}.tmx", f"<tmx version='1.4'><header/><body>\n{tus}</body></tmx>\n")
        tracemalloc.start()
        try:
            count = sum(1 for _ in read_parallel(CorpusSpec(paths=path, src_lang="en", tgt_lang="de")))
            return tracemalloc.get_traced_memory()[1] if count == n_tu else -1
        finally:
            tracemalloc.stop()

    small, large = peak_bytes(1000), peak_bytes(8000)
    assert small > 0 and large > 0
    assert large - small < 200_000  # keeping the 7000 extra empty <tu> alone costs ~500 kB
