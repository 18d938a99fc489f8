"""Recipes and overrides: every shipped recipe validates; errors are collected, located
(file:line) and say what would be valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mtadapt.config import ConfigError, config_from_dict, config_to_dict, load_recipe, parse_override

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def _is_compare_recipe(path: Path) -> bool:
    """A `mtadapt compare` grid (a `base:` run plus cells) rather than a single run."""
    return "base" in (yaml.safe_load(path.read_text(encoding="utf-8")) or {})


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_validates(recipe):
    if _is_compare_recipe(recipe):
        grid = pytest.importorskip("mtadapt.compare.grid")
        _, cells = grid.load_compare_recipe(recipe)  # validates every cell's run config
        assert cells
        return
    config = load_recipe(recipe)
    # what `train` writes to run.yaml reads back as the same config (resume, `--run` folders)
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(config)))) == config


def test_toy_recipe_values():
    config = load_recipe(RECIPES[[p.name for p in RECIPES].index("toy.yaml")])
    assert (config.model.name_or_path, config.data.src_lang, config.data.tgt_lang) == ("tiny:mbart50", "de_DE", "en_XX")
    assert config.method.name == "full" and config.train.learning_rate == 1e-3


def test_all_errors_reported_with_file_and_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        "model:\n"
        "  name_or_path: tiny:mbart50\n"
        "data:\n"
        "  max_tokns: 512\n"          # line 4: typo
        "train:\n"
        "  schedule: cosine\n"        # line 6: not a choice
        "  learning_rate: 0.001\n"
        "  max_stepz: 10\n"           # line 8: typo
        "generation:\n"
        "  num_beams: 4\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe)
    message = str(info.value)
    assert message.startswith("3 problem(s)")
    assert f"{recipe}:4: data.max_tokns: unknown key; did you mean 'max_tokens'?" in message
    assert f"{recipe}:6: train.schedule: 'cosine' is not one of 'linear', 'inverse_sqrt', 'constant'" in message
    assert f"{recipe}:8: train.max_stepz: unknown key; did you mean 'max_steps'?" in message


def test_unknown_section_and_cross_field_checks(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("trian:\n  max_steps: 10\ntrain:\n  max_steps: 10\n  warmup_steps: 50\ndata:\n  max_sentences: 0\n",
                      encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe)
    message = str(info.value)
    assert f"{recipe}:1: trian: unknown key; did you mean 'train'?" in message
    assert "train.warmup_steps must be between 0 and train.max_steps (10), got 50" in message
    assert "data.max_sentences must be >= 1 or null, got 0" in message


def test_batching_and_loss_choices_name_the_valid_values(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("data:\n  sort_window: 0\n  batch_order: random\n  sort_window_share: 0\ntrain:\n  loss_normalization: batch\n"
                      "  lr_scaling: tokens\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe)
    message = str(info.value)
    assert "data.sort_window must be >= 1 (batches per sorted window), got 0" in message
    assert f"{recipe}:3: data.batch_order: 'random' is not one of 'shuffled', 'ascending', 'descending'" in message
    assert "data.sort_window_share must be in (0, 1] (the largest share of an epoch's batches in one window), got 0" in message
    assert f"{recipe}:6: train.loss_normalization: 'batch' is not one of 'tokens', 'sentences', 'fixed'" in message
    assert f"{recipe}:7: train.lr_scaling: 'tokens' is not one of 'none', 'batch_tokens'" in message


def test_overrides_parse_as_typed_values():
    assert parse_override("train.learning_rate=3e-4") == ("train.learning_rate", 3e-4)
    assert isinstance(parse_override("train.learning_rate=3e-4")[1], float)
    assert parse_override("train.max_steps=100") == ("train.max_steps", 100)
    assert parse_override("train.mixed_precision=bf16") == ("train.mixed_precision", "bf16")
    assert parse_override("data.src_lang=de_DE") == ("data.src_lang", "de_DE")
    assert parse_override("model.name_or_path=tiny:m2m100") == ("model.name_or_path", "tiny:m2m100")
    assert parse_override("data.train.paths=[a.tsv]") == ("data.train.paths", ["a.tsv"])
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        parse_override("train.max_steps")


def test_overrides_apply_on_top_of_recipe():
    toy = RECIPES[[p.name for p in RECIPES].index("toy.yaml")]
    config = load_recipe(toy, ["train.learning_rate=3e-4", "train.max_steps=42", "method.name=lora",
                               "method.settings={rank: 4}", "data.tgt_lang=en_XX"])
    assert config.train.learning_rate == 3e-4 and isinstance(config.train.learning_rate, float)
    assert config.train.max_steps == 42
    assert config.method.name == "lora" and config.method.settings == {"rank": 4}
    with pytest.raises(ConfigError, match=r"train\.max_stepz: unknown key; did you mean 'max_steps'\?"):
        load_recipe(toy, ["train.max_stepz=5"])


def test_method_settings_validated_against_the_method(tmp_path):
    toy = RECIPES[[p.name for p in RECIPES].index("toy.yaml")]
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['rnak'\] for method 'lora'; valid: .*'rank'"):
        load_recipe(toy, ["method.name=lora", "method.settings={rnak: 8}"])
    with pytest.raises(ConfigError, match="rank=0 must be an integer >= 1"):
        load_recipe(toy, ["method.name=lora", "method.settings={rank: 0}"])
    with pytest.raises(ConfigError, match="method.name: 'lorra' is not one of"):
        load_recipe(toy, ["method.name=lorra"])
    with pytest.raises(ConfigError, match="for method 'full'"):  # full fine-tuning takes no LoRA settings
        load_recipe(toy, ["method.settings={rank: 8}"])


def test_wrong_type_is_reported_not_raised(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  learning_rate: fast\n  max_stepz: 10\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe)
    assert f"{recipe}:2: train.learning_rate: expected float, got 'fast'" in str(info.value)
    assert f"{recipe}:3: train.max_stepz: unknown key" in str(info.value)
