"""Streaming, resumable generation in shards, in one process or many (torchrun, accelerate).

Used by back-translation and `mtadapt translate`. The input is read as a stream, in
windows, so memory holds one window (its lines and token ids) and one shard of outputs,
never the whole corpus. For input lines x[0..n), `window_lines` W and `shard_size` S:

    windows: x[0:W], x[W:2W], ...                            # read one at a time
    window w: kept  = its non-empty lines (all lines when skip_empty is off)
              ids   = encode(kept); order = stable argsort(len(ids), descending)
              shards of S over order, numbered k = 0, 1, ... on from the previous window
    shard k: outputs = engine.translate_ids(ids[shard])  under engine.seeded(seed * 1_000_003 + k)
             (sources over the position table cut first; one warning names their input lines)
             -> work_dir/shard-0000k.jsonl   {"index": line, "output": r, "text": ...} rows
    merge:   window by window, its shards' rows sorted by (index, output)   # input order

A folder from before windows (no "window_lines" in its fingerprint) was one window over the
whole input, and resumes with that layout; so does any run whose input fits one window.

Over P processes (RANK/WORLD_SIZE set by torchrun or accelerate launch; read through
accelerate's PartialState, which also joins the process group), every rank reads the input
(shared storage) and computes the same layout, and:

    all:    check the manifest's fingerprint (each rank raises the same error)
    rank 0: remove stale *.tmp, list the finished shards (their files: each one is written
            atomically, so a file is a whole shard), write the manifest
    barrier
    all:    remaining = shards not listed; generate remaining[rank::P]
    barrier
    rank 0: check every shard exists, write the final manifest, merge

Which rank makes a shard, and how many ranks there are, changes nothing in its rows: the
shard's sentences, its batches and its sampling seed depend on k alone. A killed run (any
rank, any instant) leaves whole shard files; a rerun, with any number of processes, makes
only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mtadapt.progress import Progress, ProgressMode
from mtadapt.inference.engine import Engine
from mtadapt.inference.generation import GenerationConfig, truncate_sources, warn_truncated
from mtadapt.io import LOCK_FILES, atomic_writer, folder_lock, iter_lines
from mtadapt.models.languages import PairCodec

MANIFEST = "manifest.json"
from mtadapt.settings import DEFAULT_WINDOW_LINES  # noqa: E402  (re-exported)

LineSource = Callable[[], Iterator[str]]  # a fresh pass over the input, each call


def line_source(lines: Sequence[str] | str | Path) -> LineSource:
    """A file (read as a stream, split on "\\n" only) or lines in memory, as a LineSource."""
    if isinstance(lines, (str, Path)):
        path = Path(lines)
        if not path.is_file():
            raise FileNotFoundError(f"input file {path} does not exist")
        return lambda: iter_lines(path)
    return lambda: iter(lines)


def windows(lines: Iterable[str], window_lines: int | None) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of consecutive windows; one window when `window_lines` is None."""
    window: list[str] = []
    start = 0
    for line in lines:
        window.append(line)
        if window_lines is not None and len(window) == window_lines:
            yield start, window
            start, window = start + len(window), []
    if window or start == 0:
        yield start, window


# ---------------------------------------------------------------------------------------
# Processes.


@dataclass
class Ranks:
    """This process's place among the processes of one run (torchrun / accelerate launch).

    Attributes:
        rank: 0 .. world - 1; rank 0 writes the manifest and merges.
        world: Number of processes.
        device: Where this rank generates (its GPU under a launcher); None = as placed.
        state: accelerate's PartialState when world > 1 (barriers go through it).
    """

    rank: int = 0
    world: int = 1
    device: torch.device | None = None
    state: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()


def hold_work_folder(work_dir: Path, ranks: Ranks) -> AbstractContextManager:
    """Rank 0 checks that `work_dir` is a work folder (`check_work_folder`) and holds it
    (`mtadapt.io.folder_lock`) for the run: a second run into it is refused, naming this one's
    PID; the other ranks of this run share it by design."""
    if not ranks.main:
        return nullcontext()
    check_work_folder(work_dir)  # before the lock file is made in it
    return folder_lock(work_dir, "work folder")


def check_work_folder(work_dir: Path) -> None:
    """Refuse a work folder that holds files but no manifest: not a work folder, and it is
    removed when the translation is done.

    Raises:
        ValueError: names the folder and a few of its entries.
    """
    if not work_dir.is_dir() or (work_dir / MANIFEST).exists():
        return
    # lock files and the temporary files of atomic writes are this module's own (a run starting)
    entries = sorted(p.name for p in work_dir.iterdir() if p.name not in LOCK_FILES and not p.name.endswith(".tmp"))
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise ValueError(f"work folder {work_dir} is not empty and holds no {MANIFEST} (it is not a work folder: {shown}); "
                         "a work folder is removed when done: give --work-dir a new folder")


def current_ranks() -> Ranks:
    """The launcher's processes: one process (rank 0 of 1) unless WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPUs, nccl on GPUs
    return Ranks(state.process_index, state.num_processes, state.device if state.device.type == "cuda" else None, state)


# ---------------------------------------------------------------------------------------
# Layout and manifest.


@dataclass
class Layout:
    """How the input splits into shards (the same on every rank).

    Attributes:
        input_lines: Lines of the input.
        input_sha1: sha1 of the lines joined by "\\n" (the fingerprint of the input).
        window_lines: Lines per window; None = one window over the whole input.
        shard_size: Kept lines per shard.
        kept_per_window: Per window, the lines that are translated.
    """

    input_lines: int
    input_sha1: str
    window_lines: int | None
    shard_size: int
    kept_per_window: list[int]

    def shards_per_window(self) -> list[int]:
        return [math.ceil(kept / self.shard_size) for kept in self.kept_per_window]

    @property
    def num_shards(self) -> int:
        return sum(self.shards_per_window())

    def shard_lines(self) -> list[int]:
        """Kept lines of each shard k."""
        sizes = []
        for kept in self.kept_per_window:
            sizes += [min(self.shard_size, kept - s) for s in range(0, kept, self.shard_size)]
        return sizes


def scan(source: LineSource, window_lines: int, shard_size: int, skip_empty: bool) -> Layout:
    """One pass over the input: its size, hash and kept lines per window."""
    digest = hashlib.sha1()
    kept_per_window: list[int] = []
    n = 0
    for n, line in enumerate(source(), start=1):
        digest.update((line if n == 1 else "\n" + line).encode("utf-8"))
        if (n - 1) % window_lines == 0:
            kept_per_window.append(0)
        if not skip_empty or line.strip():
            kept_per_window[-1] += 1
    return Layout(n, digest.hexdigest(), window_lines, shard_size, kept_per_window or [0])


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.jsonl"


def _finished(work_dir: Path, num_shards: int) -> list[int]:
    names = {p.name for p in work_dir.glob("shard-*.jsonl")}
    return [k for k in range(num_shards) if shard_name(k) in names]


def _write_manifest(work_dir: Path, fingerprint: dict[str, Any], layout: Layout, done: list[int]) -> None:
    manifest = {"fingerprint": fingerprint, "num_shards": layout.num_shards,
                "window_shards": layout.shards_per_window(), "done_shards": sorted(done)}
    with atomic_writer(work_dir / MANIFEST) as f:
        f.write(json.dumps(manifest, indent=1))


def open_layout(
    source: LineSource,
    work_dir: Path,
    settings: dict[str, Any],
    window_lines: int,
    shard_size: int,
    skip_empty: bool,
) -> tuple[dict[str, Any], Layout]:
    """Scan the input, build the fingerprint and check it against `work_dir`'s manifest.

    The fingerprint is `settings["model"]`, the input's line count and sha1, the rest of
    `settings` and `window_lines`. A manifest without "window_lines" (written before
    windows existed) matches when all else does, and keeps its one-window layout; one whose
    model has no "dtype" (written before precisions were recorded) ran in float32, and one
    with no "engine" (written before engines) ran on PyTorch.

    Raises:
        ValueError: the folder holds a run of another input, model or settings.
    """
    layout = scan(source, window_lines, shard_size, skip_empty)
    fingerprint = {"model": settings.get("model", {}), "input_lines": layout.input_lines, "input_sha1": layout.input_sha1,
                   **{k: v for k, v in settings.items() if k != "model"}, "window_lines": window_lines}
    path = work_dir / MANIFEST
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))["fingerprint"]
        if "dtype" in fingerprint["model"] and isinstance(stored.get("model"), dict) and "dtype" not in stored["model"]:
            stored["model"] = {**stored["model"], "dtype": "float32"}  # from before precisions were recorded: float32
        if "engine" in fingerprint["model"] and isinstance(stored.get("model"), dict) and "engine" not in stored["model"]:
            stored["model"] = {**stored["model"], "engine": "pytorch"}  # from before engines: PyTorch
        if "window_lines" not in stored:  # a folder from before windows: one window
            fingerprint.pop("window_lines")
            layout.window_lines, layout.kept_per_window = None, [sum(layout.kept_per_window)]
        if stored != fingerprint:
            changed = [k for k in fingerprint if stored.get(k) != fingerprint[k]]
            raise ValueError(
                f"{work_dir} holds a run with other settings (differs in: {', '.join(changed)}); "
                "use another work folder, or delete this one to start over"
            )
    return fingerprint, layout


# ---------------------------------------------------------------------------------------
# Generation.


def _encode(codec: PairCodec, texts: list[str], chunk: int = 2048) -> list[array]:
    """Token ids as compact int32 arrays (a list of Python ints costs ~9x the memory)."""
    ids: list[array] = []
    for s in range(0, len(texts), chunk):
        ids += [array("i", row) for row in codec.encode_sources(texts[s : s + chunk])]
    return ids


def generate_shards(
    engine: Engine,
    source: LineSource,
    work_dir: str | Path,
    settings: dict[str, Any],
    generation: GenerationConfig,
    *,
    window_lines: int = DEFAULT_WINDOW_LINES,
    shard_size: int = 500,
    seed: int = 0,
    skip_empty: bool = True,
    ranks: Ranks | None = None,
    progress: bool | ProgressMode = False,
    desc: str = "translate",
) -> tuple[int, Layout]:
    """Generate this rank's missing shards under `work_dir` (see the module docstring).

    Args:
        engine: What translates (`inference.engine`): its codec encodes and decodes.
        settings: What the fingerprint records besides the input: "model" (what identifies
            the model, its engine and precision) and the generation settings.
        skip_empty: Empty lines get no rows (back-translation) instead of a translation.

    Returns:
        (shards this rank made, the layout).

    Raises:
        ValueError: `work_dir` holds a run of another input, model or settings, or is not a
            work folder; the input changed while the run read it; a shard is missing after
            every rank finished.
        FolderInUseError: another run holds `work_dir` (its PID named).
    """
    ranks = ranks or Ranks()
    work_dir = Path(work_dir)
    with hold_work_folder(work_dir, ranks):
        return _generate_shards(engine, source, work_dir, settings, generation, window_lines=window_lines,
                                shard_size=shard_size, seed=seed, skip_empty=skip_empty, ranks=ranks, progress=progress,
                                desc=desc)


def _generate_shards(engine: Engine, source: LineSource, work_dir: Path, settings: dict[str, Any],
                     generation: GenerationConfig, *, window_lines: int, shard_size: int, seed: int, skip_empty: bool,
                     ranks: Ranks, progress: bool | ProgressMode, desc: str) -> tuple[int, Layout]:
    work_dir.mkdir(parents=True, exist_ok=True)
    fingerprint, layout = open_layout(source, work_dir, settings, window_lines, shard_size, skip_empty)
    if ranks.main:
        for tmp in work_dir.glob("*.tmp"):  # left by a killed rank; nobody writes before the barrier
            tmp.unlink()
        _write_manifest(work_dir, fingerprint, layout, _finished(work_dir, layout.num_shards))
    ranks.barrier()
    done = json.loads((work_dir / MANIFEST).read_text(encoding="utf-8"))["done_shards"]
    remaining = sorted(set(range(layout.num_shards)) - set(done))
    mine = set(remaining[ranks.rank :: ranks.world])
    made_here: list[int] = list(done)
    sizes = layout.shard_lines()
    n = generation.num_return_sequences
    codec = engine.codec
    limit = engine.position_limit
    truncated: list[int] = []  # 1-based input lines cut to `limit` tokens: one warning at the end
    bar = Progress(sum(sizes[k] for k in mine), desc, unit="sent", mode=progress if ranks.main else "off")
    first = 0  # number of the window's first shard
    for (start, window), kept_count, count in zip(windows(source(), layout.window_lines), layout.kept_per_window,
                                                  layout.shards_per_window()):
        todo = [k for k in range(first, first + count) if k in mine]
        if todo:
            kept = [i for i, line in enumerate(window) if not skip_empty or line.strip()]
            if len(kept) != kept_count:
                raise ValueError(f"the input changed while it was read (lines {start}-{start + len(window)}); rerun")
            ids = _encode(codec, [window[i] for i in kept])
            order = sorted(range(len(kept)), key=lambda j: len(ids[j]), reverse=True)  # stable: ties keep input order
            for k in todo:
                shard = order[(k - first) * shard_size : (k - first + 1) * shard_size]
                shard_ids, cut = truncate_sources([ids[j].tolist() for j in shard], limit)
                truncated += [start + kept[shard[c]] + 1 for c in cut]
                with engine.seeded(seed * 1_000_003 + k):  # sampling: the same draws on any rank, after any resume
                    outputs = engine.translate_ids(shard_ids, generation)
                texts = codec.decode([o for per_line in outputs for o in per_line])
                with atomic_writer(work_dir / shard_name(k)) as f:
                    for position, j in enumerate(shard):
                        for r in range(n):
                            text = texts[position * n + r] if r < len(outputs[position]) else ""
                            f.write(json.dumps({"index": start + kept[j], "output": r, "text": text}, ensure_ascii=False) + "\n")
                made_here.append(k)
                if ranks.main:  # progress for a reader of the manifest; the shard files are the truth
                    finished = made_here if ranks.world == 1 else _finished(work_dir, layout.num_shards)
                    _write_manifest(work_dir, fingerprint, layout, finished)
                bar.update(len(shard))
        first += count
    bar.close()
    if truncated:
        warn_truncated(truncated, sum(sizes[k] for k in mine), limit)
    ranks.barrier()
    if ranks.main:
        finished = _finished(work_dir, layout.num_shards)
        missing = sorted(set(range(layout.num_shards)) - set(finished))
        if missing:
            raise ValueError(f"{work_dir}: shards {missing[:5]} are missing after every rank finished; run again to resume")
        _write_manifest(work_dir, fingerprint, layout, finished)
    return len(mine), layout


def _shard_rows(path: Path) -> Iterator[dict[str, Any]]:
    for line in iter_lines(path):
        if line:
            yield json.loads(line)


def iter_rows(work_dir: str | Path, source: LineSource, skip_empty: bool = True) -> Iterator[tuple[int, int, str, str]]:
    """(line, output number, input line, output text) of a finished run, in input order,
    one window in memory at a time.

    Raises:
        ValueError: the run is unfinished, or a line is missing or appears twice (a corrupt folder).
    """
    work_dir = Path(work_dir)
    manifest = json.loads((work_dir / MANIFEST).read_text(encoding="utf-8"))
    missing = sorted(set(range(manifest["num_shards"])) - set(_finished(work_dir, manifest["num_shards"])))
    if missing:
        raise ValueError(f"{work_dir}: shards {missing[:5]}{'...' if len(missing) > 5 else ''} are not done; run again to resume")
    window_lines = manifest["fingerprint"].get("window_lines")  # None: a folder from before windows
    per_window = manifest.get("window_shards", [manifest["num_shards"]])
    first = 0
    for (start, window), count in zip(windows(source(), window_lines), per_window):
        rows = [row for k in range(first, first + count) for row in _shard_rows(work_dir / shard_name(k))]
        rows.sort(key=lambda row: (row["index"], row["output"]))
        keys = [(row["index"], row["output"]) for row in rows]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{work_dir}: some lines appear in two shards; delete the folder and start over")
        expected = {start + i for i, line in enumerate(window) if not skip_empty or line.strip()}
        if {index for index, _ in keys} != expected:
            raise ValueError(f"{work_dir}: its shards do not cover lines {start}-{start + len(window) - 1} of the input; "
                             "delete the folder and start over")
        for row in rows:
            yield row["index"], row["output"], window[row["index"] - start], row.get("text", row.get("synthetic", ""))
        first += count


# ---------------------------------------------------------------------------------------
# `mtadapt translate`.


def translation_settings(model_id: dict[str, Any], generation: GenerationConfig, shard_size: int) -> dict[str, Any]:
    """The fingerprint settings of a translation run (the batch size may change on resume:
    it only moves the length limit of outputs that never reach </s>)."""
    decoding = asdict(generation)
    decoding.pop("batch_size")
    return {"model": model_id, "generation": decoding, "shard_size": shard_size}


def translate_file(
    engine: Engine,
    input_path: str | Path,
    output_path: str | Path,
    generation: GenerationConfig,
    *,
    work_dir: str | Path | None = None,
    model_id: dict[str, Any] | None = None,
    window_lines: int = DEFAULT_WINDOW_LINES,
    shard_size: int = 500,
    ranks: Ranks | None = None,
    progress: bool | ProgressMode = False,
) -> int:
    """Translate a file line for line into `output_path`, resumably and over `ranks`.

    Shards go to `work_dir` (default `<output>.shards`), which is removed once rank 0 has
    written the output. Every line gets a translation (empty ones too, as before).

    Returns:
        Shards this rank made.
    """
    ranks = ranks or Ranks()
    work_dir = Path(work_dir) if work_dir else Path(f"{output_path}.shards")
    source = line_source(input_path)
    settings = translation_settings(model_id or {}, generation, shard_size)
    with hold_work_folder(work_dir, ranks):  # from the first shard to the merge
        made, _ = generate_shards(engine, source, work_dir, settings, generation, window_lines=window_lines,
                                  shard_size=shard_size, skip_empty=False, ranks=ranks, progress=progress)
        if ranks.main:
            with atomic_writer(output_path) as f:
                for _, _, _, text in iter_rows(work_dir, source, skip_empty=False):
                    f.write(text + "\n")
            shutil.rmtree(work_dir)
    return made


STREAM_GROUP_BATCHES = 16
"""Batches a stream translates before writing them: sorting by length within 16 batches keeps
most of the padding saved by sorting the whole window, and the first lines come out soon."""


def translate_stream(
    engine: Engine,
    lines: Iterable[str],
    generation: GenerationConfig,
    window_lines: int = DEFAULT_WINDOW_LINES,
    progress: bool | ProgressMode = False,
) -> Iterator[str]:
    """Translations of `lines` (stdin to stdout), one window in memory at a time, no shards,
    yielded a group of `STREAM_GROUP_BATCHES` batches at a time:

        for each window of `window_lines` lines (one progress count, one truncation warning):
            for each group of batch_size * STREAM_GROUP_BATCHES consecutive lines:
                yield engine.translate_ids(ids[group])   # sorted by length within the group, yielded in input order

    A reader gets its first lines after one group, not after the window; a reader that goes
    away (`| head -n 1`) stops the work at the next write.
    """
    limit, codec = engine.position_limit, engine.codec
    group = generation.batch_size * STREAM_GROUP_BATCHES
    for start, window in windows(lines, window_lines):
        if not window:
            continue
        ids, cut = truncate_sources(codec.encode_sources(window), limit)
        if cut:
            warn_truncated([start + i + 1 for i in cut], len(window), limit)
        with Progress(len(window), "translate", unit="sent", mode=progress) as bar:
            for first in range(0, len(window), group):
                outputs = engine.translate_ids(ids[first : first + group], generation)
                bar.update(len(outputs))
                yield from codec.decode([o[0] for o in outputs])
