"""What the command line does when its output is not a terminal: a reader of stdout that goes
away (`mtadapt translate ... | head -n 1`) stops the work quietly, and stderr written to a file
or a pipe (`make run > log 2>&1`) gets plain progress lines instead of `\\r`-joined bars."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from mtadapt.cli import main
from mtadapt.inference.sharded import STREAM_GROUP_BATCHES
from mtadapt.progress import cli_progress


def _sources(n: int) -> str:
    words = "der hund sieht eine katze ein kind mag dieser baum jeder vogel hoert die frau".split()
    return "".join(" ".join(words[(i * 7 + k) % len(words)] for k in range(1 + i % 5)) + "\n" for i in range(n))


def test_translate_into_a_closed_pipe_stops_quietly_and_early(tmp_path):
    """The reader takes one line of 5,000 and closes the pipe: mtadapt stops at its next write
    (within two groups of batches, not after the 5,000 lines), says nothing, exits 141 (it used
    to translate every line, then print `internal error: BrokenPipeError`). Its stderr, a file,
    holds log lines, no bars (ours or Hugging Face's)."""
    n, batch_size = 5000, 2
    (tmp_path / "in.txt").write_text(_sources(n), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("MTADAPT_DEBUG", "HF_HUB_DISABLE_PROGRESS_BARS")}
    env["OMP_NUM_THREADS"] = "1"  # the machine's cores are shared: no oversubscription
    command = [sys.executable, "-m", "mtadapt.cli", "translate", "--model", "tiny:marian",
               "--batch-size", str(batch_size), "--max-length-factor", "0.2"]
    with open(tmp_path / "in.txt", "rb") as stdin, open(tmp_path / "err.txt", "wb") as stderr:
        process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr, env=env)
        first = process.stdout.readline()
        process.stdout.close()
        try:
            code = process.wait(timeout=120)
        finally:
            process.kill()
    err = (tmp_path / "err.txt").read_text(encoding="utf-8")
    assert first.endswith(b"\n") and len(first) > 1
    assert code == 141, err
    assert not re.search(r"^(internal )?error:", err, re.M) and "Traceback" not in err and "\r" not in err, err
    counts = [int(m.replace(",", "")) for m in re.findall(rf"^translate: ([\d,]+)/5,000 sent", err, re.M)]
    assert len(counts) >= 1 and 0 < counts[-1] <= 2 * batch_size * STREAM_GROUP_BATCHES, err


def test_broken_pipe_elsewhere_is_still_a_bug(monkeypatch, capsys):
    """A BrokenPipeError that is not stdout's (a worker's pipe, a socket) stays an internal error."""
    import mtadapt.cli as cli

    def broken(options):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(cli.VERBS, ("params",), (cli.ParamsOptions, broken))
    monkeypatch.delenv("MTADAPT_DEBUG", raising=False)
    assert main(["params", "--arch", "t5-small"]) == 1
    assert capsys.readouterr().err.startswith("internal error: BrokenPipeError: [Errno 32] Broken pipe\n")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_form_follows_stderr():
    assert cli_progress(False, _Terminal()) == "bar"
    assert cli_progress(True, _Terminal()) == "log"  # --no-progress
    assert cli_progress(False, io.StringIO()) == "log"  # a file or a pipe
    closed = io.StringIO()
    closed.close()
    assert cli_progress(False, closed) == "log"


def test_stderr_not_a_terminal_gets_log_lines_without_the_flag(tmp_path, capsys):
    """Without --no-progress, stderr captured (not a terminal) gets the log line, not a bar."""
    (tmp_path / "in.de").write_text(_sources(3), encoding="utf-8")
    code = main(["translate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX",
                 "-i", str(tmp_path / "in.de"), "-o", str(tmp_path / "out.en")])
    assert code == 0
    err = capsys.readouterr().err
    assert re.search(r"^translate: 3/3 sent \(100%\), [\d,.]+ sent/s, elapsed \d+s$", err, re.M), err
    assert not re.search(r"translate: +\d+%\|", err), err  # no tqdm bar
