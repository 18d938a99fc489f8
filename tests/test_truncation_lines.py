"""A source longer than the model's position table is truncated with one warning that names
its input line (1-based), in every mode: file to file (shards of length-sorted lines, over
windows), stdin/stdout (windows) and `augment backtranslate` (empty lines skipped)."""

from __future__ import annotations

import re

import pytest

from mtadapt.cli import main
from mtadapt.models.tiny import TINY_DIMS

LIMIT = TINY_DIMS["max_positions"]  # tiny models' max_position_embeddings: where sources are cut
WORDS = "jeder grosse auto folgt dieser vogel katze hoert stille frau".split()
LONG = " ".join(WORDS[i % len(WORDS)] for i in range(LIMIT + 40))  # > LIMIT tokens, whatever the vocabulary
# over-long sources at input lines 3 and 5; sorted by length they come first (positions 1, 2)
LINES = ["ein vogel", "die katze", LONG, "der hund", LONG + " frau", "eine frau"]
TRANSLATE = ["translate", "--model", "tiny:marian", "--max-length-factor", "0.05", "--no-progress"]


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _input(tmp_path, lines=LINES):
    path = tmp_path / "in.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _assert_names_lines(err: str, lines: str, of: int) -> None:
    assert _warnings(err) == [
        f"warning: 2 of {of} sources are longer than the model's {LIMIT} positions and were truncated "
        f"(input lines {lines}); their translations cover only the start"]


@pytest.mark.parametrize("layout", [[], ["--window-lines", "4", "--shard-size", "1"]], ids=["one-shard", "shards-windows"])
def test_file_to_file_names_input_lines(tmp_path, capsys, layout):
    out = tmp_path / "out.txt"
    assert main([*TRANSLATE, "-i", str(_input(tmp_path)), "-o", str(out), *layout]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(LINES)
    _assert_names_lines(capsys.readouterr().err, "3, 5", len(LINES))


def test_stream_names_input_lines_in_later_windows(tmp_path, capsys):
    assert main([*TRANSLATE, "-i", str(_input(tmp_path)), "--window-lines", "4"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == len(LINES)
    # one warning per window: line 3 in the first, line 5 (the first of the second window) next
    assert [re.search(r"\(input lines ([\d, ]+)\)", w).group(1) for w in _warnings(captured.err)] == ["3", "5"]


def test_backtranslate_names_input_lines_with_empty_lines_skipped(tmp_path, capsys):
    inp = _input(tmp_path, ["", *LINES])  # an empty first line: not translated, still counted
    argv = ["augment", "backtranslate", "--model", "tiny:marian", "--input", str(inp), "--output", str(tmp_path / "bt.tsv"),
            "--mode", "greedy", "--max-length-factor", "0.05", "--max-length-ratio", "0", "--no-progress", "--json"]
    assert main(argv) == 0
    _assert_names_lines(capsys.readouterr().err, "4, 6", len(LINES))
