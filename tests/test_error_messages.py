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
    from mtadapt.evaluate import generation

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
