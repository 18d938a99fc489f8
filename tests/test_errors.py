"""Every bad input of the hardening probe (issue 13) gets a named error, and nothing is silently
wrong: one test per finding, each asserting the exact outcome (exit status, the file or flag
the message names, line counts, what is left on disk).

The CLI's contract: an error the user can fix prints one `error:` line and exits 2; a bug
prints one `internal error:` line and exits 1, its traceback only with --debug or
MTADAPT_DEBUG=1.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mtadapt.cli import main
from mtadapt.config import config_from_dict, load_recipe
from mtadapt.errors import AdapterError, CheckpointError, ConfigError, DataError, TrainingError

U2028 = "\u2028"


def _echo(monkeypatch, calls: list | None = None) -> None:
    """Generation returns each source's own ids: output line i is input line i, exactly."""
    from mtadapt.inference import generation

    def echo(model, codec, input_ids, attention_mask, config, decoder_prompts=None):
        if calls is not None:
            calls.append(input_ids.shape)
        return [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]

    monkeypatch.setattr(generation, "generate_batch", echo)


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _last_err(capsys) -> str:
    """The last line of stderr (after transformers' own progress bars), with its newline."""
    return capsys.readouterr().err.rstrip("\n").rsplit("\n", 1)[-1].rsplit("\r", 1)[-1] + "\n"


TRANSLATE = ["translate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX", "--no-progress"]


# ------------------------------------------------------------------------ the top-level handler


def test_internal_error_is_one_line_and_traceback_needs_debug(monkeypatch, capsys):
    import mtadapt.cli as cli

    def broken(options):
        return [][1]  # a bug: IndexError

    monkeypatch.setitem(cli.VERBS, ("params",), (cli.ParamsOptions, broken))
    monkeypatch.delenv("MTADAPT_DEBUG", raising=False)
    assert main(["params", "--arch", "t5-small"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: IndexError: list index out of range\n") and "--debug" in err
    assert "Traceback" not in err
    assert main(["params", "--arch", "t5-small", "--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("MTADAPT_DEBUG", "1")
    assert main(["params", "--arch", "t5-small"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_expected_error_is_one_line_exit_2(tmp_path, capsys):
    recipe = _write(tmp_path / "r.yaml", "train:\n  max_steps: 5\n  warmup_steps: 1\n  max_steps: 9\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {recipe}:4: key 'max_steps' is given twice, here and at line 2; "
                   "YAML would keep only the last: remove one\n")


# ------------------------------------------------------------------------ silent wrong results


def test_translate_splits_lines_on_newline_only(tmp_path, monkeypatch):
    """U+2028, U+2029, \\x0b, \\x0c, \\x1c-\\x1e, \\x85 stay inside their line: 5 in, 5 out."""
    _echo(monkeypatch)
    lines = ["ein vogel", f"jeder{U2028}katze", "die\u2029frau\x0bmag", "ein\x1cauto\x85folgt", "stille"]
    src = _write(tmp_path / "in.txt", "\n".join(lines) + "\r\n")
    assert main([*TRANSLATE, "-i", str(src), "-o", str(tmp_path / "out.txt")]) == 0
    out = (tmp_path / "out.txt").read_bytes().decode("utf-8").split("\n")
    assert len(out) == 6 and out[-1] == ""  # 5 lines, each ended by \n
    assert out[0] == "ein vogel" and out[4] == "stille"
    assert "jeder" in out[1] and "katze" in out[1]  # one line, not two


def test_evaluate_reads_sources_and_references_on_newline_only(tmp_path, monkeypatch, capsys):
    _echo(monkeypatch)
    refs = ["ein vogel folgt dieser stille frau", f"jeder katze{U2028}hoert dieser stille frau"]
    src = _write(tmp_path / "src.txt", "".join(r + "\n" for r in refs))
    ref = _write(tmp_path / "ref.txt", "".join(r + "\n" for r in refs))
    hyp = tmp_path / "hyp.txt"
    assert main(["evaluate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX", "--src", str(src),
                 "--ref", str(ref), "--save-hyp", str(hyp), "--n-bootstrap", "0", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert hyp.read_text(encoding="utf-8").count("\n") == 2
    assert result["scores"]["chrF"]["score"] > 80  # the echo of line i is scored against reference i


def test_backtranslate_counts_a_u2028_line_as_one_input(tmp_path, monkeypatch):
    from mtadapt.augment.backtranslate import BacktranslationConfig, backtranslate_file

    _echo(monkeypatch)
    text = _write(tmp_path / "mono.en", f"one bird\ntwo{U2028}cats\nthree women\n")
    config = BacktranslationConfig(mode="greedy", drop_copies=False, max_length_ratio=0)
    report = backtranslate_file(text, tmp_path / "bt.tsv", None, config, model="tiny:mbart50", src_lang="en_XX", tgt_lang="de_DE")
    assert report.input_lines == 3 and report.generated == 3 and report.kept == 3
    rows = (tmp_path / "bt.tsv").read_text(encoding="utf-8").split("\n")
    assert len(rows) == 4 and rows[1].endswith("\ttwo cats")  # the target keeps its one line


def test_non_finite_settings_are_config_errors(tmp_path):
    recipe = _write(tmp_path / "r.yaml", "train:\n  learning_rate: .inf\n  label_smoothing: .nan\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe)
    assert f"{recipe}:2: train.learning_rate: must be a finite number, got inf" in str(info.value)
    assert f"{recipe}:3: train.label_smoothing: must be a finite number, got nan" in str(info.value)
    with pytest.raises(ConfigError, match="train.learning_rate: must be a finite number, got nan"):
        load_recipe(None, ["train.learning_rate=nan"])
    with pytest.raises(ConfigError, match=r"method.settings.alpha: must be a finite number, got inf"):
        load_recipe(None, ["method.name=lora", "method.settings.alpha=.inf"])


@pytest.mark.parametrize(("override", "message"), [
    ("train.eval_every=-5", "train.eval_every must be >= 0 (0 = only at the end), got -5"),
    ("train.save_every=-1", "train.save_every must be >= 0"),
    ("train.log_every=0", "train.log_every must be >= 1, got 0"),
    ("data.max_dev_sentences=0", "data.max_dev_sentences must be >= 1, got 0"),
])
def test_out_of_range_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(None, [override])


def test_limit_zero_is_a_config_error(tmp_path):
    recipe = _write(tmp_path / "r.yaml", "data:\n  train:\n    paths: [toy:train]\n    limit: 0\n")
    with pytest.raises(ConfigError, match=r"data.train.limit must be >= 1 \(or null: the whole corpus\), got 0"):
        load_recipe(recipe)


def test_duplicated_yaml_key_names_both_lines(tmp_path):
    recipe = _write(tmp_path / "r.yaml", "model:\n  name_or_path: tiny:t5\ndata:\n  max_tokens: 64\nmodel:\n  name_or_path: tiny:m2m100\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:5: key 'model' is given twice, here and at line 1"):
        load_recipe(recipe)


def _tiny_config(tmp_path: Path, toy_dir: Path, run: str = "run", **train) -> object:
    """LoRA rank 2 on tiny:mbart50, 3 steps, a checkpoint and a dev score every step; the dev
    file has one empty target (line 2), which must be reported."""
    dev_de = toy_dir.joinpath("dev.de").read_text(encoding="utf-8").split("\n")[:6]
    dev_en = toy_dir.joinpath("dev.en").read_text(encoding="utf-8").split("\n")[:6]
    dev_en[1] = "  "
    _write(tmp_path / "dev.de", "\n".join(dev_de) + "\n")
    _write(tmp_path / "dev.en", "\n".join(dev_en) + "\n")
    data = {"model": {"name_or_path": "tiny:mbart50"},
            "data": {"train": {"paths": ["toy:train"], "limit": 48}, "dev": {"paths": [str(tmp_path / "dev.de"), str(tmp_path / "dev.en")]},
                     "test": None, "max_tokens": 256},
            "method": {"name": "lora", "settings": {"rank": 2}},
            "train": {"output_dir": str(tmp_path / run), "max_steps": 3, "warmup_steps": 0, "eval_every": 1, "save_every": 1,
                      "log_every": 1, "keep_checkpoints": 5, **train},
            "generation": {"max_length_factor": 1.0}}
    return config_from_dict(data)


# The tests of one trained run go to one pytest-xdist worker (--dist loadgroup): trained once.
ON_TRAINED_RUN = pytest.mark.xdist_group("test_errors_trained_run")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from mtadapt.toy import toy_corpus_dir
    from mtadapt.train.loop import train

    tmp_path = tmp_path_factory.mktemp("hardening")
    config = _tiny_config(tmp_path, toy_corpus_dir())
    train(config, progress=False)
    return tmp_path, config


def _copy_run(trained_run, tmp_path: Path) -> Path:
    source, _ = trained_run
    run_dir = tmp_path / "run"
    shutil.copytree(source / "run", run_dir)
    return run_dir


def _resume_config(trained_run, run_dir: Path, **method):
    from dataclasses import replace

    _, config = trained_run
    config = replace(config, train=replace(config.train, output_dir=str(run_dir), max_steps=4))
    return replace(config, method=replace(config.method, **method)) if method else config


@ON_TRAINED_RUN
def test_dev_set_drops_are_reported(trained_run):
    tmp_path, _ = trained_run
    report = json.loads((tmp_path / "run" / "data_report.json").read_text(encoding="utf-8"))
    assert report["dev"] == f"read 6 pairs, kept 5 (83.3%); dropped 1: empty_tgt 1 (e.g. {tmp_path / 'dev.en'}:2)"


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, toy_dir, monkeypatch):
    from mtadapt.train import loop

    real_loss, calls = loop.label_smoothed_loss, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(loop, "label_smoothed_loss", poisoned)
    config = _tiny_config(tmp_path, toy_dir)
    with pytest.raises(TrainingError) as info:
        loop.train(config, progress=False)
    run_dir = tmp_path / "run"
    assert str(info.value).startswith("step 3: the training loss is nan (not finite); the run stopped. "
                                      f"the last good checkpoint is {run_dir / 'checkpoints' / 'step-000002'}")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step-000001", "step-000002"]
    for folder in (run_dir / "best", run_dir / "checkpoints" / "step-000002"):
        weights = load_file(str(next(folder.glob("*.safetensors"))))
        assert weights and all(bool(torch.isfinite(t).all()) for t in weights.values())
    assert not (run_dir / "final").exists()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().split("\n") if line]
    assert all(math.isfinite(r["loss"]) for r in rows if "loss" in r) and max(r["step"] for r in rows) == 2


@ON_TRAINED_RUN
def test_garbage_latest_is_refused_and_nothing_is_rewritten(trained_run, tmp_path):
    from mtadapt.train.loop import train

    run_dir = _copy_run(trained_run, tmp_path)
    (run_dir / "checkpoints" / "latest").write_text("\x00garbage", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError) as info:
        train(_resume_config(trained_run, run_dir), resume=True, progress=False)
    assert str(info.value).startswith(f"{run_dir / 'checkpoints' / 'latest'} holds '\\x00garbage', not a checkpoint name")
    assert "checkpoints present: step-000001, step-000002, step-000003" in str(info.value)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before  # metrics.jsonl kept


@ON_TRAINED_RUN
def test_corrupt_checkpoint_names_the_file(trained_run, tmp_path):
    from mtadapt.train.loop import train

    run_dir = _copy_run(trained_run, tmp_path)
    weights = run_dir / "checkpoints" / "step-000003" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=rf"^{weights} is damaged \(truncated or not safetensors"):
        train(_resume_config(trained_run, run_dir), resume=True, progress=False)
    (run_dir / "checkpoints" / "step-000003" / "state.json").write_text('{"step": 3, "opt', encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"step-000003/state\.json is damaged \(JSONDecodeError"):
        train(_resume_config(trained_run, run_dir), resume=True, progress=False)


@ON_TRAINED_RUN
def test_resume_refused_for_a_changed_method_keeps_run_yaml(trained_run, tmp_path):
    from mtadapt.train.loop import train

    run_dir = _copy_run(trained_run, tmp_path)
    before = (run_dir / "run.yaml").read_bytes()
    with pytest.raises(CheckpointError, match=r"step-000003: checkpoint shapes differ from this run's parameters"):
        train(_resume_config(trained_run, run_dir, settings={"rank": 4}), resume=True, progress=False)
    assert (run_dir / "run.yaml").read_bytes() == before


def test_resume_with_nothing_to_resume(tmp_path, capsys):
    recipe = _write(tmp_path / "r.yaml", f"train:\n  output_dir: {tmp_path / 'typo'}\n")
    assert main(["train", str(recipe), "--resume"]) == 2
    assert capsys.readouterr().err == (f"error: --resume: {tmp_path / 'typo'} holds no run to resume (no run.yaml); "
                                       "drop --resume to start a new run there, or set train.output_dir to the run's folder\n")
    assert not (tmp_path / "typo").exists()


@ON_TRAINED_RUN
def test_corrupt_run_yaml_names_the_file(trained_run, tmp_path, capsys):
    run_dir = _copy_run(trained_run, tmp_path)
    (run_dir / "run.yaml").write_text("model:\n  name_or_path: [tiny:mbart50\n", encoding="utf-8")
    src = _write(tmp_path / "in.txt", "ein vogel\n")
    assert main(["translate", "--run", str(run_dir), "-i", str(src), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run_dir / 'run.yaml'} is damaged: {run_dir / 'run.yaml'}:3:1: invalid YAML") and err.count("\n") == 1


def test_augment_mix_reports_its_drops(tmp_path, capsys):
    real_src = _write(tmp_path / "real.de", "eins\nzwei\ndrei\n")
    real_tgt = _write(tmp_path / "real.en", "one\n\nthree\n")
    synthetic = _write(tmp_path / "bt.tsv", "vier\tfour\nfünf\tfi\x00ve\n")
    out_src, out_tgt = tmp_path / "mix.de", tmp_path / "mix.en"
    assert main(["augment", "mix", "--real", str(real_src), str(real_tgt), "--synthetic", str(synthetic),
                 "--output-src", str(out_src), "--output-tgt", str(out_tgt)]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0] == "mixed 2 real pairs x 1.0 + 1 synthetic = 3 pairs"
    assert out[1] == f"real ({real_src} {real_tgt}): read 3 pairs, kept 2 (66.7%); dropped 1: empty_tgt 1 (e.g. {real_tgt}:2)"
    assert out[2] == f"synthetic ({synthetic}): read 2 pairs, kept 1 (50.0%); dropped 1: control_char 1 (e.g. {synthetic}:2)"
    assert out_src.read_text(encoding="utf-8") == "eins\ndrei\nvier\n"


# ------------------------------------------------------------------------ empty inputs


def _recipe(tmp_path: Path, train_src: str, train_tgt: str, dev: tuple[str, str] | None = None) -> Path:
    paths = {"train": [str(_write(tmp_path / "t.de", train_src)), str(_write(tmp_path / "t.en", train_tgt))]}
    if dev is not None:
        paths["dev"] = [str(_write(tmp_path / "d.de", dev[0])), str(_write(tmp_path / "d.en", dev[1]))]
    data = {"train": {"paths": paths["train"]}, "dev": {"paths": paths["dev"]} if dev else None, "test": None}
    recipe = {"model": {"name_or_path": "tiny:mbart50"}, "data": data,
              "train": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "warmup_steps": 0}}
    return _write(tmp_path / "r.yaml", yaml.safe_dump(recipe))


@pytest.mark.parametrize(("src", "tgt", "dropped"), [("", "", "dropped 0"), ("eins\nzwei\n", " \n\n", "dropped 2: empty_tgt 2")])
def test_no_training_pair_is_a_named_error(tmp_path, capsys, src, tgt, dropped):
    assert main(["train", str(_recipe(tmp_path, src, tgt)), "--no-progress"]) == 2
    err = _last_err(capsys)
    assert err.startswith(f"error: no training pairs left in ['{tmp_path / 't.de'}', '{tmp_path / 't.en'}']: read ")
    assert dropped in err and err.count("\n") == 1


def test_empty_dev_file_is_a_named_error(tmp_path, capsys):
    assert main(["train", str(_recipe(tmp_path, "eins zwei\n", "one two\n", dev=("", ""))), "--no-progress"]) == 2
    err = _last_err(capsys)
    assert err == (f"error: no dev pairs in ['{tmp_path / 'd.de'}', '{tmp_path / 'd.en'}']: read 0 pairs, kept 0 (0.0%); "
                   "dropped 0; fix the dev file or set data.dev: null\n")


def test_empty_translate_and_evaluate_inputs(tmp_path, capsys):
    empty = _write(tmp_path / "empty.txt", "")
    full = _write(tmp_path / "full.txt", "a b\n")
    assert main([*TRANSLATE, "-i", str(empty)]) == 2
    assert capsys.readouterr().err == f"error: input {empty} is empty: no lines to read\n"
    assert main(["evaluate", "--ref", str(empty), "--hyp", str(full)]) == 2
    assert capsys.readouterr().err == f"error: reference {empty} is empty: no lines to read\n"
    assert main(["evaluate", "--ref", str(full), "--hyp", str(empty)]) == 2
    assert capsys.readouterr().err == f"error: hypothesis {empty} is empty: no lines to read\n"


# ------------------------------------------------------------------------ evaluate, flags


def test_bootstrap_on_a_two_line_file(tmp_path, capsys):
    """sacreBLEU's bootstrap mixed Python and NumPy floats: TypeError on small files."""
    ref = _write(tmp_path / "ref.txt", "the cat sat on the mat\nhello world foo bar\n")
    hyp = _write(tmp_path / "hyp.txt", "the cat sat on the mat\nzzz yyy\n")
    assert main(["evaluate", "--ref", str(ref), "--hyp", str(hyp), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert scores["BLEU"]["score"] == pytest.approx(69.2463, abs=1e-3)
    assert scores["BLEU"]["ci_low"] < scores["BLEU"]["score"] < scores["BLEU"]["ci_high"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--beam", "0"], "argument --beam: must be in [1, 64], got 0"),
    (["--batch-size", "-2"], "argument --batch-size: must be in [1, 4096], got -2"),
    (["--max-length-factor", "inf"], "argument --max-length-factor: must be in (0, 10], got inf"),
    (["--n-bootstrap", "-5"], "argument --n-bootstrap: must be in [0, 10000], got -5"),
])
def test_bad_flag_values_are_refused(tmp_path, capsys, argv, message):
    ref = _write(tmp_path / "ref.txt", "a b\n")
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--ref", str(ref), "--hyp", str(ref), *argv])
    assert info.value.code == 2 and capsys.readouterr().err == f"error: {message}; see mtadapt evaluate --help\n"


def test_over_long_source_is_truncated_with_a_counted_warning(tmp_path, capsys):
    words = "jeder grosse auto folgt dieser vogel katze hoert stille frau".split()
    long_line = " ".join(words[i % len(words)] for i in range(700))
    src = _write(tmp_path / "in.txt", f"ein vogel\n{long_line}\ndie katze\n")
    out = tmp_path / "out.txt"
    assert main([*TRANSLATE, "-i", str(src), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count("\n") == 3  # every line translated
    err = capsys.readouterr().err
    # one warning, counting the one long source and naming its input line
    assert "warning: 1 of 3 sources are longer than the model's 128 positions and were truncated " \
           "(input lines 2); their translations cover only the start\n" in err
    assert err.count("warning:") == 1


def test_missing_output_folder_fails_before_the_work(tmp_path, monkeypatch, capsys):
    calls: list = []
    _echo(monkeypatch, calls)
    src = _write(tmp_path / "in.txt", "ein vogel\n")
    target = tmp_path / "nope" / "out.txt"
    assert main([*TRANSLATE, "-i", str(src), "-o", str(target)]) == 2
    assert capsys.readouterr().err == (f"error: --output {target}: folder {tmp_path / 'nope'} does not exist; "
                                       f"create it first (mkdir -p {tmp_path / 'nope'})\n")
    assert calls == []  # nothing was translated


# ------------------------------------------------------------------------ models, files, adapters


def test_missing_local_model_path(tmp_path, capsys):
    src = _write(tmp_path / "in.txt", "a\n")
    assert main(["translate", "--model", str(tmp_path / "no-model"), "-i", str(src)]) == 2
    assert capsys.readouterr().err == f"error: model folder {tmp_path / 'no-model'} does not exist\n"
    assert main(["translate", "--model", str(tmp_path), "-i", str(src)]) == 2
    assert capsys.readouterr().err.startswith(f"error: model folder {tmp_path} has no config.json")


def test_folder_given_for_a_file(tmp_path, capsys):
    from mtadapt.data import CorpusSpec, read_parallel

    ref = _write(tmp_path / "ref.txt", "a\n")
    assert main(["evaluate", "--ref", str(tmp_path), "--hyp", str(ref)]) == 2
    assert capsys.readouterr().err == f"error: reference file {tmp_path} is a folder; give a file, one sentence a line\n"
    (tmp_path / "train.de").mkdir()
    _write(tmp_path / "train.en", "one\n")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'train.de'}: is a folder"):
        list(read_parallel(CorpusSpec(paths=tmp_path / "train", src_lang="de", tgt_lang="en")))


@pytest.fixture
def saved_adapter(tmp_path):
    from mtadapt.methods import storage
    from mtadapt.models.loading import load_model
    from mtadapt.train.loop import apply_method

    loaded = load_model("tiny:mbart50")
    apply_method(loaded, "lora", {"rank": 2})
    return storage.save_adapter(loaded.model, tmp_path / "adapter")


def _load(folder: Path):
    from mtadapt.methods import storage
    from mtadapt.models.loading import load_model

    loaded = load_model("tiny:mbart50")
    return storage.load_adapter(loaded.model, folder, loaded.family.targets)


def test_zero_byte_and_truncated_adapter_weights(saved_adapter, tmp_path, capsys):
    weights = saved_adapter / "adapter.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(AdapterError, match=rf"^{weights} is damaged \({len(data) // 2} bytes; truncated or not safetensors"):
        _load(saved_adapter)
    weights.write_bytes(b"")
    src = _write(tmp_path / "in.txt", "a\n")
    assert main([*TRANSLATE, "--adapter", str(saved_adapter), "-i", str(src)]) == 2
    assert _last_err(capsys).startswith(f"error: {weights} is damaged (0 bytes; truncated or not safetensors")


def test_edited_adapter_json(saved_adapter):
    config = saved_adapter / "adapter.json"
    meta = json.loads(config.read_text(encoding="utf-8"))
    meta["settings"]["rank"] = 4  # the weights are rank 2
    config.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(AdapterError, match=rf"^{saved_adapter}: adapter.safetensors does not fit adapter.json \(method 'lora'"):
        _load(saved_adapter)
    meta["settings"]["rank"] = 0
    config.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(AdapterError, match=rf"^{config}: invalid method settings: .*rank=0 must be an integer >= 1"):
        _load(saved_adapter)
    config.write_text(json.dumps(meta, indent=2)[:50], encoding="utf-8")
    with pytest.raises(AdapterError, match=rf"^{config}:4: invalid JSON at column \d+: .* \(edited or truncated\?\)"):
        _load(saved_adapter)


# ------------------------------------------------- errors defined next to the code that raises them


def test_serve_and_marian_errors_are_mtadapt_errors(tmp_path, monkeypatch, capsys):
    """The server's adapter errors and the Marian reader's format errors belong to the
    hierarchy (they were bare `ValueError`s outside it), stay `ValueError`s, and the CLI reports
    each as one `error:` line, exit 2."""
    from mtadapt.errors import ModelError, MtadaptError
    from mtadapt.models.marian_native import MarianFormatError
    from mtadapt.serve.registry import AdapterError as ServeAdapterError

    assert ServeAdapterError is AdapterError  # `except AdapterError` catches what `serve` raises
    assert issubclass(MarianFormatError, ModelError) and issubclass(MarianFormatError, MtadaptError)
    assert issubclass(MarianFormatError, ValueError)
    monkeypatch.delenv("MTADAPT_DEBUG", raising=False)
    folder = tmp_path / "marian"
    folder.mkdir()
    _write(folder / "model.deen.bin", "garbage")
    _write(folder / "vocab.deen.spm", "x")
    assert main(["params", "--model", str(folder)]) == 2
    assert _last_err(capsys).startswith(f"error: {folder / 'model.deen.bin'}: truncated or not a Marian .bin file (")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["serve", "--model", "tiny:marian", "--adapter", f"x={empty}", "--src-lang", "de", "--tgt-lang", "en"]) == 2
    assert _last_err(capsys) == f"error: adapters[0] (x): {empty} holds no adapter.json (mtadapt adapter), " \
        "adapter_config.json (PEFT LoRA) or run.yaml (run folder)\n"
