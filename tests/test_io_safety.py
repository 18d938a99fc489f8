"""Data is never destroyed by a command: no output may be one of its inputs (through symlinks
and hard links too), training refuses a folder that is not a run, a second process is refused
a run, compare or work folder another one holds (naming its PID, and the lock dies with its
holder), and written files get the mode a plain write gives (the umask applies)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtadapt.cli import main
from mtadapt.io import LOCK_FILE, atomic_write_text, atomic_writer, replace_folder

REPO = Path(__file__).resolve().parents[1]
TOY = str(REPO / "recipes" / "toy.yaml")


def _file(path: Path, text: str = "ein haus\nzwei katzen\n") -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _one_error(capsys) -> str:
    """The one `error:` line on stderr (loading a model may draw progress bars before it)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------
# 1. An output that is an input.


def _clash_cases(tmp: Path) -> list[tuple[list[str], str, Path]]:
    """(argv, the flag named, the input that must survive) for each verb."""
    text, ref = _file(tmp / "in.txt"), _file(tmp / "ref.txt", "a house\ntwo cats\n")
    src, tgt = _file(tmp / "real.de"), _file(tmp / "real.en", "a house\ntwo cats\n")
    syn_src, syn_tgt = _file(tmp / "syn.de"), _file(tmp / "syn.en", "a house\ntwo cats\n")
    (tmp / "link.txt").symlink_to(text)
    os.link(text, tmp / "hard.txt")
    model = ["--model", "tiny:marian"]
    return [
        (["translate", *model, "-i", str(text), "-o", str(text)], "--output", text),
        (["translate", *model, "-i", str(text), "-o", str(tmp / "link.txt")], "--output", text),
        (["translate", *model, "-i", str(text), "-o", str(tmp / "hard.txt")], "--output", text),
        (["evaluate", *model, "--src", str(text), "--ref", str(ref), "--save-hyp", str(ref)], "--save-hyp", ref),
        (["augment", "noise", "--input", str(text), "--output", str(text)], "--output", text),
        (["augment", "mix", "--real", str(src), str(tgt), "--synthetic", str(syn_src), str(syn_tgt),
          "--output-src", str(tmp / "mixed.de"), "--output-tgt", str(tgt)], "--output-tgt", tgt),
        (["augment", "backtranslate", *model, "--input", str(text), "--output", str(text)], "--output", text),
    ]


@pytest.mark.parametrize("case", range(7), ids=["translate", "translate-symlink", "translate-hardlink", "evaluate",
                                                "noise", "mix", "backtranslate"])
def test_an_output_that_is_an_input_is_refused(case, tmp_path, capsys):
    argv, flag, kept = _clash_cases(tmp_path)[case]
    before = kept.read_bytes()
    assert main(argv) == 2
    err = _one_error(capsys)
    assert err.startswith(f"error: {flag} ") and "would destroy the input" in err and str(kept.name) in err
    assert kept.read_bytes() == before


def test_two_outputs_that_are_one_file_are_refused(tmp_path, capsys):
    src, tgt = _file(tmp_path / "real.de"), _file(tmp_path / "real.en")
    out = str(tmp_path / "mixed.txt")
    assert main(["augment", "mix", "--real", str(src), str(tgt), "--synthetic", str(src), str(tgt),
                 "--output-src", out, "--output-tgt", out]) == 2
    assert "--output-tgt " in _one_error(capsys) and not Path(out).exists()


def test_an_output_symlink_is_written_through(tmp_path):
    """The link stays a link; its target gets the text (the CLI too: `augment noise -o link`)."""
    target = _file(tmp_path / "target.txt", "old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    with atomic_writer(link) as f:
        f.write("streamed\n")
    assert link.is_symlink() and target.read_text() == "streamed\n"
    text = _file(tmp_path / "in.txt", "ein haus\n")
    assert main(["augment", "noise", "--input", str(text), "--output", str(link), "--word-dropout", "0",
                 "--shuffle-distance", "0"]) == 0
    assert link.is_symlink() and target.read_text() == "ein haus\n"


# ---------------------------------------------------------------------------------------
# 2. Training into a folder that is not a run.


def test_train_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    _file(folder / "result.json", '{"mine": 1}\n')
    _file(folder / "notes.txt")
    (folder / "data").mkdir()
    for extra, expected in (([], "data/, notes.txt, result.json"), (["--resume"], "holds no run to resume (no run.yaml)")):
        assert main(["train", TOY, f"train.output_dir={folder}", "train.max_steps=1", "train.warmup_steps=0", "--no-progress", *extra]) == 2
        err = _one_error(capsys)
        assert str(folder) in err and expected in err
    assert sorted(p.name for p in folder.iterdir()) == ["data", "notes.txt", "result.json"]  # no lock file left either
    assert (folder / "result.json").read_text() == '{"mine": 1}\n'
    # --resume continues only a run: a checkpoints/ folder alone does not make one
    (folder / "checkpoints").mkdir()
    empty = tmp_path / "only-checkpoints"
    (empty / "checkpoints").mkdir(parents=True)
    assert main(["train", TOY, f"train.output_dir={empty}", "train.max_steps=1", "train.warmup_steps=0", "--resume", "--no-progress"]) == 2
    assert "holds no run to resume (no run.yaml)" in _one_error(capsys)


# ---------------------------------------------------------------------------------------
# 3. Folders held by another process.

HOLDER = """
import sys, time
from mtadapt.io import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold(folder: Path) -> subprocess.Popen:
    """A process holding `folder`'s lock (it prints "held" once it has it)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(folder)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_run_folder_is_refused_and_freed_when_its_holder_dies(tmp_path, capsys):
    """A second `train` is refused with the holder's PID; once the holder is killed (no clean
    release), the run goes ahead, and its files and folders get the modes the umask gives."""
    run = tmp_path / "run"
    holder = _hold(run)
    try:
        argv = ["train", TOY, f"train.output_dir={run}", "train.max_steps=2", "train.warmup_steps=0", "train.eval_every=0", "train.save_every=1",
                "data.max_dev_sentences=4", "--no-progress"]
        assert main(argv) == 2
        err = _one_error(capsys)
        assert f"run folder {run} is in use by another mtadapt process (PID {holder.pid})" in err
        assert not (run / "run.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    old = os.umask(0o022)
    try:
        assert main(argv) == 0
    finally:
        os.umask(old)
    modes = {p.relative_to(run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*")
             if p.name not in (LOCK_FILE,)}
    assert {"run.yaml", "result.json", "metrics.jsonl", "final/adapter.safetensors", "checkpoints/latest"} <= set(modes)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o755 if (run / name).is_dir() else 0o644)}
    assert not wrong, wrong


def test_held_compare_and_work_folders_are_refused(tmp_path, capsys):
    out = tmp_path / "grid"
    holder = _hold(out)
    try:
        assert main(["compare", str(REPO / "recipes" / "quickstart.yaml"), f"output_dir={out}", "--no-progress"]) == 2
        assert f"compare folder {out} is in use by another mtadapt process (PID {holder.pid})" in _one_error(capsys)
        assert not (out / "results.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    text = _file(tmp_path / "in.txt")
    work = tmp_path / "out.txt.shards"
    holder = _hold(work)
    try:
        assert main(["translate", "--model", "tiny:marian", "-i", str(text), "-o", str(tmp_path / "out.txt"), "--no-progress"]) == 2
        assert f"work folder {work} is in use by another mtadapt process (PID {holder.pid})" in _one_error(capsys)
        assert not (tmp_path / "out.txt").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["translate", "--model", "tiny:marian", "-i", str(text), "-o", str(tmp_path / "out.txt"), "--no-progress"]) == 0
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 2 and not work.exists()


def test_a_work_folder_that_is_not_one_is_refused(tmp_path, capsys):
    """A work folder is removed when the translation is done: one holding other files is refused."""
    text = _file(tmp_path / "in.txt")
    assert main(["translate", "--model", "tiny:marian", "-i", str(text), "-o", str(tmp_path / "out.txt"),
                 "--work-dir", str(tmp_path), "--no-progress"]) == 2
    assert "holds no manifest.json" in _one_error(capsys) and text.exists()


# ---------------------------------------------------------------------------------------
# 4. File modes.


@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, file_mode, folder_mode):
    old = os.umask(umask)
    try:
        written = [atomic_write_text(tmp_path / "a.txt", "x")]
        with atomic_writer(tmp_path / "b.txt") as f:
            f.write("y")
        written.append(tmp_path / "b.txt")
        folder = replace_folder(tmp_path / "folder", lambda tmp: (tmp / "c.txt").write_text("z"))
        plain = tmp_path / "plain.txt"
        plain.write_text("a plain write, for reference")
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == file_mode
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [file_mode, file_mode]
    assert stat.S_IMODE(folder.stat().st_mode) == folder_mode


def test_a_replaced_file_keeps_its_mode(tmp_path):
    """As a plain overwrite keeps it."""
    path = _file(tmp_path / "kept.txt")
    path.chmod(0o640)
    atomic_write_text(path, "new\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "new\n"


def test_adapters_merged_weights_exports_and_translations_honour_the_umask(tmp_path):
    """Under umask 002 every file the verbs write is 0664 and every folder 0775 (safetensors
    alone writes 0600 files; the tempfiles of atomic writes were 0600 too)."""
    from mtadapt.methods import storage
    from mtadapt.methods.lora import LoraConfig
    from mtadapt.models.loading import load_model

    text = _file(tmp_path / "in.txt")
    out = tmp_path / "out"
    old = os.umask(0o002)
    try:
        loaded = load_model("tiny:marian")
        storage.add_adapter(loaded.model, LoraConfig(rank=2), loaded.family.targets)
        storage.save_adapter(loaded.model, out / "adapter", base_model="tiny:marian")
        adapter = ["--model", "tiny:marian", "--adapter", str(out / "adapter")]
        assert main(["merge", *adapter, "--out", str(out / "merged")]) == 0
        assert main(["export", *adapter, "--format", "peft", "--out", str(out / "peft")]) == 0
        assert main(["translate", *adapter, "-i", str(text), "-o", str(out / "hyp.txt"), "--no-progress"]) == 0
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert {"adapter/adapter.safetensors", "merged/model.safetensors", "peft/adapter_model.safetensors", "hyp.txt"} <= set(modes)
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != (0o775 if (out / name).is_dir() else 0o664)}
    assert not wrong, wrong
