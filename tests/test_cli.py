"""The command line: help for every verb (also verbs added later), batched translation in
input order, clear errors, and the parameter report."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from mtadapt.cli import build_parser, main


def all_verbs(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every (sub)command path, e.g. ("train",), ("augment", "noise")."""
    verbs = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                verbs.append(prefix + (name,))
                verbs += all_verbs(sub, prefix + (name,))
    return verbs


REPO = Path(__file__).resolve().parents[1]
VERBS = all_verbs(build_parser())


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_help_for_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mtadapt " + " ".join(verb))


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(v[0] in out for v in VERBS)


def test_translate_keeps_input_order_with_batching(tmp_path, monkeypatch):
    """A model that echoes its source makes the output order exactly checkable."""
    from mtadapt.inference import generation

    batches = []

    def echo(model, codec, input_ids, attention_mask, config, decoder_prompts=None):
        batches.append(input_ids.shape)
        return [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]

    monkeypatch.setattr(generation, "generate_batch", echo)
    words = "jeder grosse auto folgt dieser vogel katze hoert stille frau mag ein gruene".split()
    lines = [" ".join(words[(i * 7) % len(words):][: 1 + (i * 5) % 11] or words[:2]) for i in range(53)]
    assert len({len(line.split()) for line in lines}) > 5
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    code = main(["translate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX",
                 "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.txt"), "--batch-size", "8", "--no-progress"])
    assert code == 0
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == lines
    assert len(batches) == 7 and batches[0][0] == 8 and batches[-1][0] == 53 - 6 * 8
    widths = [shape[1] for shape in batches]
    assert widths == sorted(widths, reverse=True)  # longest first: sorted by length


def test_translate_stdin_to_stdout(monkeypatch, capsys):
    import io

    from mtadapt.inference import generation

    monkeypatch.setattr(generation, "generate_batch",
                        lambda model, codec, ids, mask, config, decoder_prompts=None: [r[m.bool()].tolist() for r, m in zip(ids, mask)])
    monkeypatch.setattr("sys.stdin", io.StringIO("ein vogel\njeder katze hoert dieser stille frau\n"))
    assert main(["translate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX", "--no-progress"]) == 0
    assert capsys.readouterr().out == "ein vogel\njeder katze hoert dieser stille frau\n"


def test_translate_stdin_to_file_streams_atomically(tmp_path, monkeypatch):
    """stdin to -o FILE writes each window's lines as they are translated (memory holds one
    window, not the corpus), into a temporary file renamed onto FILE at the end: a failure
    midway leaves no FILE."""
    import contextlib
    import io

    import mtadapt.cli as cli
    from mtadapt.inference import generation

    written: list[str] = []
    seen_before_batch: list[int] = []

    @contextlib.contextmanager
    def recording_writer(path):
        with cli_atomic_writer(path) as handle:
            class Recorder:
                def write(self, text):
                    written.append(text)
                    return handle.write(text)
            yield Recorder()

    def echo(model, codec, ids, mask, config, decoder_prompts=None):
        seen_before_batch.append(len(written))
        if fail_at is not None and len(seen_before_batch) == fail_at:
            raise RuntimeError("stop here")
        return [r[m.bool()].tolist() for r, m in zip(ids, mask)]

    cli_atomic_writer = cli.atomic_writer
    monkeypatch.setattr(cli, "atomic_writer", recording_writer)
    monkeypatch.setattr(generation, "generate_batch", echo)
    lines = ["ein vogel", "jeder katze", "hoert dieser stille frau", "mag ein gruene auto", "folgt"]
    out = tmp_path / "out.txt"
    argv = ["translate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX", "-o", str(out),
            "--window-lines", "2", "--batch-size", "2", "--no-progress"]
    fail_at = 3
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    assert main(argv) == 1  # the bug-shaped RuntimeError: an internal error
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written is left
    written.clear(), seen_before_batch.clear()
    fail_at = None
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    assert main(argv) == 0
    assert out.read_text(encoding="utf-8").splitlines() == lines
    assert seen_before_batch == [0, 2, 4]  # windows of 2 lines: each written before the next is translated


def test_translate_dtype_reaches_the_model(monkeypatch, capsys):
    import io

    import torch

    from mtadapt.inference import generation

    seen = []

    def echo(model, codec, ids, mask, config, decoder_prompts=None):
        seen.append(next(model.parameters()).dtype)
        return [r[m.bool()].tolist() for r, m in zip(ids, mask)]

    monkeypatch.setattr(generation, "generate_batch", echo)
    monkeypatch.setattr("sys.stdin", io.StringIO("ein vogel\n"))
    assert main(["translate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX", "--dtype", "bfloat16",
                 "--no-progress"]) == 0
    assert seen == [torch.bfloat16] and capsys.readouterr().out == "ein vogel\n"


@pytest.mark.filterwarnings("ignore:--dtype float16 has no hardware support")  # every profile emulates float16
def test_place_for_inference_names_valid_dtypes(host_profile):
    import torch
    from conftest import PROFILE_DEFAULTS
    from torch import nn

    from mtadapt.runs import place_for_inference

    layer = nn.Linear(2, 2)
    assert place_for_inference(layer) == PROFILE_DEFAULTS[host_profile]  # the host's default
    assert place_for_inference(layer, "float32") == "float32" and layer.weight.dtype == torch.float32
    assert place_for_inference(layer, "float16") == "float16" and layer.weight.dtype == torch.float16
    with pytest.raises(ValueError, match="'half' is not one of float32, bfloat16, float16"):
        place_for_inference(layer, "half")


def test_evaluate_mismatched_line_counts(tmp_path, capsys):
    (tmp_path / "hyp.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("a\nb\n", encoding="utf-8")
    assert main(["evaluate", "--hyp", str(tmp_path / "hyp.txt"), "--ref", str(tmp_path / "ref.txt"), "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert message.startswith("error: ") and "3 lines" in message and "references have 2" in message
    assert "line-aligned" in message


def test_evaluate_missing_file_is_named(tmp_path, capsys):
    assert main(["evaluate", "--hyp", str(tmp_path / "nope.txt"), "--ref", str(tmp_path / "nope.txt")]) == 2
    assert re.fullmatch(r"error: reference file .*nope\.txt does not exist\n", capsys.readouterr().err)


def test_evaluate_perfect_hypotheses(tmp_path, capsys):
    text = "every cat hears this quiet woman\nthis cat likes a green cat\n"
    (tmp_path / "ref.txt").write_text(text, encoding="utf-8")
    assert main(["evaluate", "--hyp", str(tmp_path / "ref.txt"), "--ref", str(tmp_path / "ref.txt"), "--n-bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["BLEU", "100.00"]


def test_params_t5_base_lora_rank_8(capsys):
    assert main(["params", "--arch", "t5-base", "--method", "lora", "--set", "rank=8"]) == 0
    out = capsys.readouterr().out
    # q and v of 12 encoder self, 12 decoder self and 12 decoder cross attentions:
    # 36 * 2 * r * (768 + 768) = 884,736.
    assert "884,736" in out


def test_params_set_applies_to_every_method(capsys):
    """`--set` with several `--method` applies to each (it used to be dropped without a word),
    and a key that one of them lacks is refused, naming the flag and the method."""
    assert main(["params", "--arch", "t5-base", "--method", "houlsby", "--method", "pfeiffer", "--set", "bottleneck_dim=64"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "houlsby" in line or "pfeiffer" in line]
    assert len(rows) == 2 and all("bottleneck_dim=64" in row for row in rows)
    assert main(["params", "--arch", "t5-base", "--method", "lora", "--method", "houlsby", "--set", "rank=8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --set rank: not a setting of --method houlsby")
    assert "--method lora" not in err  # lora has rank: only the method lacking it is named


def test_train_reports_config_errors(capsys):
    assert main(["train", str(REPO / "recipes" / "toy.yaml"), "train.schedule=cosine", "train.max_stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "'cosine' is not one of 'linear', 'inverse_sqrt', 'constant'" in err and "did you mean 'max_steps'" in err


def test_overrides_may_follow_options_in_train_and_compare(capsys):
    """`compare recipe --no-progress key=value` reads the override (it used to be refused as
    an unrecognized argument); verbs without overrides still refuse strays."""
    assert main(["compare", str(REPO / "recipes" / "quickstart.yaml"), "--no-progress", "base.train.max_stepz=3"]) == 2
    assert "did you mean 'max_steps'" in capsys.readouterr().err
    assert main(["train", str(REPO / "recipes" / "toy.yaml"), "--resume", "train.schedule=cosine"]) == 2
    assert "'cosine' is not one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["params", "--arch", "facebook/mbart-large-50", "--method", "lora", "rank=8"])
    assert "unrecognized arguments: rank=8" in capsys.readouterr().err



@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_export_peft_writes_the_adapter_kind_peft_loads(tmp_path, method):
    """`mtadapt export --format peft` picks the PEFT format from the saved adapter's method,
    and PEFT reproduces the adapted model's logits."""
    peft = pytest.importorskip("peft")
    import json

    import torch

    from mtadapt.methods import storage
    from mtadapt.methods.lora import LoraConfig
    from mtadapt.methods.prompt import PromptConfig
    from mtadapt.models.loading import load_model

    loaded = load_model("tiny:mbart50")
    config = LoraConfig(rank=4)
    if method == "prompt":
        config = PromptConfig(prompt_length=3, init="normal", init_std=1.0, seed=0)
    storage.add_adapter(loaded.model, config, loaded.family.targets)
    with torch.no_grad():  # a fresh LoRA B is zero: make it change the output
        for name, p in loaded.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    storage.save_adapter(loaded.model, tmp_path / "adapter", base_model="tiny:mbart50")
    assert main(["export", "--model", "tiny:mbart50", "--adapter", str(tmp_path / "adapter"), "--format", "peft",
                 "--out", str(tmp_path / "peft")]) == 0
    written = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert written["peft_type"] == {"lora": "LORA", "prompt": "PROMPT_TUNING"}[method]
    theirs = peft.PeftModel.from_pretrained(load_model("tiny:mbart50").model, tmp_path / "peft").eval()
    ids = loaded.tokenizer(["Hallo Welt", "Guten Morgen, wie geht es?"], return_tensors="pt", padding=True)
    labels = loaded.tokenizer(["Hello world", "Good morning"], return_tensors="pt", padding=True).input_ids
    with torch.no_grad():
        ours = loaded.model.eval()(**ids, labels=labels).logits
        plain = load_model("tiny:mbart50").model.eval()(**ids, labels=labels).logits
        assert (ours - plain).abs().max() > 1e-3
        assert (ours - theirs(**ids, labels=labels).logits).abs().max() < 1e-5
