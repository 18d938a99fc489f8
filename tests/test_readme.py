"""The README's examples run as written, so they cannot drift from the code.

* "Using it": every line of the bash block, in order, through `mtadapt.cli.main` in a folder
  laid out like the repository root (`recipes/` and `src/` linked in, `runs/` and outputs
  written there). Only training is shortened: `train` lines get a few steps appended as
  overrides (the last value of a key wins). The quickstart `compare` line (shortened the
  same way) and the int8 back-translation with the real Bergamot en->pt model run under
  `-m slow`.
* "Python API": the python block is executed; every line it prints must equal the comment
  line written under the statement that prints it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from mtadapt.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")

# appended to every `train` line: a few steps, one mid-run evaluation and checkpoint
FAST_TRAIN = ["train.max_steps=12", "train.warmup_steps=2", "train.eval_every=6", "train.save_every=6", "data.max_dev_sentences=8"]
FAST_COMPARE = ["base.train.max_steps=2", "base.train.warmup_steps=1", "base.train.eval_every=2", "base.train.save_every=2",
                "base.data.max_dev_sentences=4", "base.data.test.limit=8", "n_bootstrap=100"]


def code_block(section: str, language: str) -> str:
    """The first ```language block of README section `## section`."""
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def cli_commands() -> list[list[str]]:
    """The "Using it" block as argument lists: comments dropped, `NAME=value` lines set
    variables that later lines use as $NAME."""
    variables: dict[str, str] = {}
    commands = []
    for line in code_block("Using it", "bash").split("\n"):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if len(words) == 1 and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
            name, value = words[0].split("=", 1)
            variables[name] = value
            continue
        assert words[0] == "mtadapt", f"README line is not an mtadapt command: {line!r}"
        expanded = []
        for word in words[1:]:
            for name in re.findall(r"\$(\w+)", word):
                assert name in variables, f"README line uses ${name} before setting it: {line!r}"
            expanded.append(re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], word))
        commands.append(expanded)
    return commands


def is_slow(argv: list[str]) -> bool:
    return argv[0] == "compare" or "--dtype" in argv


def shortened(argv: list[str], output_dir: Path) -> list[str]:
    if argv[0] == "train":
        return argv + FAST_TRAIN
    if argv[0] == "compare":
        return argv + FAST_COMPARE + [f"output_dir={output_dir / 'runs' / 'quickstart'}"]
    return argv


def run_commands(commands: list[list[str]], folder: Path) -> dict[str, str]:
    """Run each command in `folder`; returns its standard output by the command line."""
    outputs = {}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for argv in commands:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = main(shortened(argv, folder))
            assert code == 0, f"`mtadapt {' '.join(argv)}` exited with {code}:\n{out.getvalue()}"
            outputs[" ".join(argv)] = out.getvalue()
    finally:
        os.chdir(cwd)
    return outputs


@pytest.fixture
def repo_like(tmp_path: Path) -> Path:
    """A folder that looks like the repository root to relative paths (read-only parts linked)."""
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    (tmp_path / "src").symlink_to(REPO / "src")
    return tmp_path


def test_cli_block_parses_into_known_commands():
    from mtadapt.cli import build_parser

    commands = cli_commands()
    assert len(commands) >= 12
    parser = build_parser()
    for argv in commands:
        args, extra = parser.parse_known_args(argv)  # exits (fails the test) on an unknown verb
        # what `mtadapt` itself accepts after the known options: key=value overrides, in the
        # verbs that take them; anything else is an unknown option
        unknown = [e for e in extra if not (hasattr(args, "overrides") and "=" in e and not e.startswith("-"))]
        assert not unknown, f"README line `mtadapt {' '.join(argv)}`: unknown {unknown}"


def test_cli_examples_run_as_written(repo_like):
    commands = [c for c in cli_commands() if not is_slow(c)]
    outputs = run_commands(commands, repo_like)
    by_verb = {}
    for line, out in outputs.items():
        by_verb.setdefault(line.split()[0], []).append(out)
    toy = REPO / "src" / "mtadapt" / "resources" / "toy"
    n_test = len((toy / "test.de").read_text(encoding="utf-8").split("\n")) - 1
    # translate and evaluate --save-hyp wrote one line per test sentence
    assert len((repo_like / "full.en").read_text(encoding="utf-8").split("\n")) - 1 == n_test
    assert len((repo_like / "lora.en").read_text(encoding="utf-8").split("\n")) - 1 == n_test
    assert (repo_like / "runs" / "toy" / "final" / "adapter.json").exists()
    assert (repo_like / "runs" / "toy-lora" / "best" / "adapter.json").exists()
    assert re.search(r"^BLEU +\d+\.\d\d", by_verb["evaluate"][0], re.M)
    assert "paired bootstrap" in by_verb["evaluate"][1]
    assert "1,179,648" in by_verb["params"][0]  # mbart-large-50 LoRA r=8, as PEFT counts
    assert (repo_like / "merged" / "config.json").exists()
    assert (repo_like / "peft" / "adapter_config.json").exists()
    assert len((repo_like / "noisy.de").read_text(encoding="utf-8").split("\n")) - 1 == 3000
    rows = (repo_like / "bt.tsv").read_text(encoding="utf-8").split("\n")[:-1]
    assert rows and all(len(r.split("\t")) == 2 for r in rows)
    # the Python API opens the same run and translates as `mtadapt translate --run` did
    import mtadapt

    sources = (toy / "test.de").read_text(encoding="utf-8").split("\n")[:5]
    full = (repo_like / "full.en").read_text(encoding="utf-8").split("\n")[:5]
    assert mtadapt.open_run(repo_like / "runs" / "toy").translate(sources) == full


@pytest.mark.slow
def test_cli_slow_lines_run_as_written(repo_like):
    commands = [c for c in cli_commands() if is_slow(c)]
    assert [c[0] for c in commands] == ["compare", "augment"]
    run_commands(commands, repo_like)
    assert (repo_like / "runs" / "quickstart" / "report.md").exists()
    backtranslate = commands[1]
    output = backtranslate[backtranslate.index("--output") + 1]  # the file the README line names
    rows = (repo_like / output).read_text(encoding="utf-8").split("\n")[:-1]
    assert rows and all(len(r.split("\t")) == 2 for r in rows)


def python_example() -> tuple[str, list[str]]:
    """The Python API block and the output it promises: the comment lines written directly
    under a statement that prints (`print(...)`, `print_trainable_parameters()`)."""
    block = code_block("Python API", "python")
    expected, lines = [], block.split("\n")
    for i, line in enumerate(lines):
        if re.search(r"\bprint(_trainable_parameters)?\(", line.split("#")[0]):
            j = i + 1
            assert j < len(lines) and lines[j].startswith("# "), f"README python line {i + 1} prints; write its output under it"
            expected.append(lines[j][2:])
    return block, expected


def test_python_api_example_runs_and_prints_what_it_says(repo_like):
    block, expected = python_example()
    assert len(expected) >= 4
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(repo_like)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md (Python API)", "exec"), {"__name__": "readme_example"})
    finally:
        os.chdir(cwd)
    assert out.getvalue().split("\n")[:-1] == expected
    for folder in ("adapters/lora", "peft", "merged"):
        assert any((repo_like / folder).iterdir())


def test_python_api_counts_as_mtadapt_params_does(capsys):
    """The README's trainable line is the `mtadapt params` row for the same settings."""
    _, expected = python_example()
    code = main(["params", "--model", "tiny:mbart50", "--method", "lora", "--set", "rank=8", "--set", "alpha=32",
                 "--set", "dropout=0.1"])
    assert code == 0
    row = capsys.readouterr().out.split("\n")[2].split("|")
    trainable, total, percent = (c.strip() for c in row[4:7])
    assert expected[0] == f"trainable params: {trainable} || all params: {total} || trainable%: {percent}"
