"""Property-based tests (hypothesis) of the invariants every reader and writer keeps:
lines in == lines out, in order, whatever the characters (U+2028, \\x0b, \\x85, \\r mid-line);
every pair read is either kept or counted under a drop reason; overrides reach the config
unchanged; noise keeps one output line per input line.

Examples are few and small (max_examples, no deadline) so the file runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mtadapt.augment.noise import noise_lines, noise_tsv_lines
from mtadapt.config import ConfigError, load_recipe, parse_override
from mtadapt.data import CorpusSpec, DataReport, read_parallel
from mtadapt.io import join_lines, lines_of_bytes, read_lines, split_lines
from mtadapt.settings import NoiseConfig

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Characters that str.splitlines() treats as line breaks, and other awkward ones.
BREAKERS = "\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x85\r\t\x00\ufeff"
# One line: anything but "\n" (surrogates cannot be encoded as UTF-8).
line_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")
                    | st.sampled_from(BREAKERS), max_size=30)
# A line as a file holds it: not ending in "\r" (that "\r" is part of a "\r\n" ending).
file_line = line_text.filter(lambda s: not s.endswith("\r"))
lines_list = st.lists(file_line, max_size=12)


@FAST
@given(lines_list)
def test_split_lines_inverts_join_lines(lines):
    assert split_lines(join_lines(lines)) == lines


@FAST
@given(lines_list)
def test_crlf_endings_read_as_the_same_lines(lines):
    assert split_lines("".join(line + "\r\n" for line in lines)) == lines


@FAST
@given(lines_list)
def test_bytes_and_files_read_the_lines_written(tmp_path, lines):
    assume(not (lines and lines[0].startswith("\ufeff")))  # a byte-order mark opening a file is dropped, by design
    data = join_lines(lines).encode("utf-8")
    assert lines_of_bytes(data, "<test>") == lines
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    assert read_lines(path) == lines


def _write(path: Path, lines: list[str]) -> Path:
    path.write_bytes(join_lines(lines).encode("utf-8"))
    return path


def _no_bom(text: str, line: int) -> str:
    return text[1:] if line == 0 and text.startswith("\ufeff") else text


def _check_accounting(examples, report: DataReport, pairs: list[tuple[str, str]]) -> None:
    """Every line read is kept or counted; a kept pair is exactly `pairs[i]` of its line i, in
    file order."""
    assert report.read == len(pairs)
    assert len(examples) == report.kept == len(pairs) - sum(report.dropped.values())
    numbers = [int(e.origin.rsplit(":", 1)[1]) - 1 for e in examples]
    assert numbers == sorted(set(numbers))
    assert [(e.src, e.tgt) for e in examples] == [pairs[i] for i in numbers]


pair_lists = st.lists(st.tuples(file_line, file_line), max_size=10)


@FAST
@given(pair_lists)
def test_moses_reader_keeps_or_counts_every_pair(tmp_path, pairs):
    src = _write(tmp_path / "c.de", [s for s, _ in pairs])
    tgt = _write(tmp_path / "c.en", [t for _, t in pairs])
    report = DataReport()
    examples = list(read_parallel(CorpusSpec(paths=(src, tgt), src_lang="de", tgt_lang="en"), report))
    _check_accounting(examples, report, [(_no_bom(s, i), _no_bom(t, i)) for i, (s, t) in enumerate(pairs)])


@FAST
@given(pair_lists)
def test_tsv_and_jsonl_readers_keep_or_count_every_pair(tmp_path, pairs):
    pairs = [(s.replace("\t", " "), t.replace("\t", " ")) for s, t in pairs]
    tsv = _write(tmp_path / "c.tsv", [f"{s}\t{t}" for s, t in pairs])
    report = DataReport()
    examples = list(read_parallel(CorpusSpec(paths=tsv, src_lang="de", tgt_lang="en"), report))
    pairs = [(_no_bom(s, i), t) for i, (s, t) in enumerate(pairs)]  # a file's BOM opens the first source
    _check_accounting(examples, report, pairs)
    jsonl = _write(tmp_path / "c.jsonl", [json.dumps({"src": s, "tgt": t}, ensure_ascii=False) for s, t in pairs])
    report = DataReport()
    examples = list(read_parallel(CorpusSpec(paths=jsonl, src_lang="de", tgt_lang="en"), report))
    _check_accounting(examples, report, pairs)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=10**6), st.floats(min_value=1e-8, max_value=10.0, allow_nan=False))
def test_overrides_reach_the_config(max_steps, learning_rate):
    config = load_recipe(None, [f"train.max_steps={max_steps}", "train.warmup_steps=0", f"train.learning_rate={learning_rate!r}",
                                "data.train.paths=[toy:train]"])
    assert config.train.max_steps == max_steps and config.train.learning_rate == learning_rate


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["inf", "-inf", "nan", ".inf", ".nan", "1e999"]),
       st.sampled_from(["train.learning_rate", "train.label_smoothing", "data.max_length_ratio", "generation.max_length_factor"]))
def test_non_finite_overrides_are_refused(value, key):
    with pytest.raises(ConfigError, match=rf"{key}: must be a finite number"):
        load_recipe(None, [f"{key}={value}", "data.train.paths=[toy:train]"])


@settings(max_examples=40, deadline=None)
@given(st.from_regex(r"[a-z][a-z_]{0,8}(\.[a-z][a-z_]{0,8}){0,3}", fullmatch=True),
       st.integers(min_value=-10**9, max_value=10**9) | st.floats(allow_nan=False, allow_infinity=False))
def test_parse_override_round_trips_numbers(key, value):
    parsed_key, parsed = parse_override(f"{key}={value!r}")
    assert parsed_key == key and parsed == value and type(parsed) is type(value)


noise_configs = st.builds(
    NoiseConfig,
    word_dropout=st.floats(0, 0.9), word_shuffle_distance=st.floats(0, 5), insertion_prob=st.floats(0, 1),
    insertion_source=st.sampled_from(["vocabulary", "filler"]), blank_prob=st.floats(0, 1),
    unit=st.sampled_from(["auto", "word", "grapheme"]), fraction=st.floats(0, 1), seed=st.integers(0, 1000),
)


def _has_vocabulary(config: NoiseConfig, texts: list[str]) -> bool:
    """Insertion from the corpus vocabulary needs a word somewhere (else a named ValueError)."""
    return not (config.insertion_prob > 0 and config.insertion_source == "vocabulary") or any(t.split() for t in texts)


@FAST
@given(lines_list, noise_configs, st.integers(0, 3))
def test_noise_keeps_one_line_per_line(lines, config, epoch):
    assume(_has_vocabulary(config, lines))
    out = noise_lines(lines, config, epoch)
    assert len(out) == len(lines)
    assert split_lines(join_lines(out)) == out  # written and read back: the same lines
    for before, after in zip(lines, out):
        assert (not before.split()) <= (after == before)  # a line with nothing to noise stays as it was


@FAST
@given(pair_lists, noise_configs.filter(lambda c: c.side == "source") | st.builds(NoiseConfig, side=st.sampled_from(["target", "both"])))
def test_noise_tsv_keeps_lines_and_columns(pairs, config):
    lines = [f"{s.replace(chr(9), ' ')}\t{t.replace(chr(9), ' ')}" for s, t in pairs]
    assume(_has_vocabulary(config, [s for s, _ in pairs]) and _has_vocabulary(config, [t for _, t in pairs]))
    out = noise_tsv_lines(lines, config)
    assert len(out) == len(lines) and all(line.count("\t") == 1 for line in out)
    assert split_lines(join_lines(out)) == out
    kept_side = 1 if config.side == "source" else 0 if config.side == "target" else None
    if kept_side is not None:
        assert [line.split("\t")[kept_side] for line in out] == [line.split("\t")[kept_side] for line in lines]


def test_properties_cover_the_characters_splitlines_breaks_on():
    """The alphabet above holds every character that str.splitlines() splits on besides \\n."""
    breakers = {chr(c) for c in range(0x3000) if len(("a" + chr(c) + "b").splitlines()) > 1}
    assert breakers - {"\n"} == set(BREAKERS) - {"\t", "\x00", "\ufeff"}
