"""Noise: shuffle bound, dropout never empties, reproducibility per (seed, epoch, index),
insertion from the corpus vocabulary, blanking, scripts without spaces, config errors,
the CLI and the training-loop hook."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mtadapt.augment.noise import (
    NoiseConfig,
    Noiser,
    WordVocabulary,
    graphemes,
    noise_lines,
    noise_tsv_lines,
    noise_units,
    sentence_rng,
    split_units,
)

ONLY_SHUFFLE = dict(word_dropout=0.0, blank_prob=0.0, insertion_prob=0.0)
WORDS = [f"w{i}" for i in range(30)]


@pytest.mark.parametrize("k", [2, 3, 4.5])
def test_shuffle_moves_no_word_k_or_more_places(k):
    config = NoiseConfig(word_shuffle_distance=k, **ONLY_SHUFFLE)
    largest = 0
    for seed in range(400):
        out = noise_units(WORDS, config, np.random.default_rng(seed))
        assert sorted(out) == sorted(WORDS)  # a permutation
        moves = [abs(out.index(w) - i) for i, w in enumerate(WORDS)]
        largest = max(largest, *moves)
    assert largest < k
    assert largest == int(np.ceil(k)) - 1  # the bound is reached: the shuffle is not a no-op


def test_shuffle_distance_one_or_zero_keeps_order():
    for k in (0, 1):
        config = NoiseConfig(word_shuffle_distance=k, **ONLY_SHUFFLE)
        assert noise_units(WORDS, config, np.random.default_rng(0)) == WORDS


def test_dropout_never_empties_and_drops_at_the_rate():
    config = NoiseConfig(word_dropout=0.9, word_shuffle_distance=0)
    noiser = Noiser(config)
    kept = 0
    for i in range(500):
        out = noiser("a b", i)
        assert out.split() and set(out.split()) <= {"a", "b"}
        single = noiser("word", 1000 + i)
        assert single == "word"
        kept += len(noiser(" ".join(WORDS), 2000 + i).split())
    rate = 1 - kept / (500 * len(WORDS))
    assert 0.87 < rate < 0.93


def test_empty_input_stays_empty():
    noiser = Noiser(NoiseConfig(word_dropout=0.5, insertion_prob=0.5, insertion_source="filler"))
    assert noiser("", 0) == ""
    assert noiser("   ", 1) == "   "


def test_same_seed_epoch_index_reproduce_and_epochs_differ():
    config = NoiseConfig(word_dropout=0.2, word_shuffle_distance=3, blank_prob=0.1)
    text = " ".join(WORDS)
    a, b = Noiser(config), Noiser(config)
    assert a(text, 7, epoch=2) == b(text, 7, epoch=2)
    # independent of batching: sentence 7 alone or inside a list gives the same result
    assert a.noise_texts(["x y z", text, "q"], [6, 7, 8], epoch=2)[1] == a(text, 7, epoch=2)
    per_epoch = {a(text, 7, epoch=e) for e in range(6)}
    assert len(per_epoch) == 6
    assert a(text, 7) != Noiser(NoiseConfig(word_dropout=0.2, word_shuffle_distance=3, blank_prob=0.1, seed=1))(text, 7)
    # (seed, epoch) pairs do not collide the way seed + epoch would
    assert sentence_rng(1, 0, 5).random() != sentence_rng(0, 1, 5).random()


def test_insertion_draws_from_vocabulary_by_frequency():
    corpus = ["the cat", "the dog", "the the bird"]
    vocabulary = WordVocabulary.from_texts(corpus)
    assert vocabulary.words == ["bird", "cat", "dog", "the"]
    rng = np.random.default_rng(0)
    counts = Counter(vocabulary.sample(rng) for _ in range(7000))
    assert set(counts) == {"bird", "cat", "dog", "the"}
    assert abs(counts["the"] / 7000 - 4 / 7) < 0.03  # frequency 4 of 7 words
    config = NoiseConfig(word_dropout=0, word_shuffle_distance=0, insertion_prob=1.0)
    out = Noiser(config, vocabulary)("x y", 0).split()
    assert len(out) == 5 and out[1] == "x" and out[3] == "y"  # a word in each of the 3 gaps
    assert {out[0], out[2], out[4]} <= set(vocabulary.words)


def test_insertion_filler_and_missing_vocabulary():
    config = NoiseConfig(word_dropout=0, word_shuffle_distance=0, insertion_prob=1.0, insertion_source="filler", filler_token="<f>")
    assert Noiser(config)("a b", 0) == "<f> a <f> b <f>"
    with pytest.raises(ValueError, match="insertion_source='vocabulary' needs"):
        Noiser(NoiseConfig(insertion_prob=0.1))
    # noise_lines builds the vocabulary from the lines themselves
    out = noise_lines(["alpha beta", "gamma"], NoiseConfig(word_dropout=0, word_shuffle_distance=0, insertion_prob=0.5))
    assert set(" ".join(out).split()) <= {"alpha", "beta", "gamma"}


def test_blanking():
    config = NoiseConfig(word_dropout=0, word_shuffle_distance=0, blank_prob=1.0, blank_token="<b>")
    assert Noiser(config)("one two three", 0) == "<b> <b> <b>"
    config = NoiseConfig(word_dropout=0, word_shuffle_distance=0, blank_prob=0.3)
    outs = Noiser(config).noise_texts([" ".join(WORDS)] * 300)
    blanked = sum(o.split().count("<blank>") for o in outs) / (300 * len(WORDS))
    assert 0.27 < blanked < 0.33
    assert all(len(o.split()) == len(WORDS) for o in outs)


def test_fraction_of_sentences_noised():
    config = NoiseConfig(word_dropout=0, word_shuffle_distance=0, blank_prob=1.0, fraction=0.25)
    outs = Noiser(config).noise_texts(["a b c"] * 800)
    share = sum(o != "a b c" for o in outs) / 800
    assert 0.21 < share < 0.29


def test_scripts_without_spaces_use_graphemes():
    assert split_units("the cat sat") == (["the", "cat", "sat"], " ")
    units, sep = split_units("我喜欢学习中文")
    assert units == list("我喜欢学习中文") and sep == ""
    # Thai: tone marks and vowel signs stay on their consonant
    assert graphemes("กิ่ง") == ["กิ่", "ง"]
    config = NoiseConfig(word_dropout=0, word_shuffle_distance=3)
    for i in range(50):
        out = Noiser(config)("กิ่งไม้", i)
        assert sorted(graphemes(out)) == sorted(graphemes("กิ่งไม้"))
    out = Noiser(NoiseConfig(word_dropout=0.9, word_shuffle_distance=0))("我喜欢学习中文", 3)
    assert 1 <= len(out) < 7 and set(out) <= set("我喜欢学习中文")
    # unit="word" keeps a Chinese sentence as one word
    assert Noiser(NoiseConfig(unit="word", word_shuffle_distance=5, word_dropout=0))("我喜欢 学习", 0) in {"我喜欢 学习", "学习 我喜欢"}


def test_config_errors_named_together():
    with pytest.raises(ValueError) as err:
        NoiseConfig(word_dropout=1.5, side="src", blank_token="a b", word_shuffle_distance=-1)
    message = str(err.value)
    for part in ("word_dropout", "side: 'src' is not one of 'source', 'target', 'both'", "blank_token", "word_shuffle_distance"):
        assert part in message


def test_tsv_noises_the_chosen_side():
    config = NoiseConfig(word_dropout=0, word_shuffle_distance=0, blank_prob=1.0, side="target")
    assert noise_tsv_lines(["a b\tc d"], config) == ["a b\t<blank> <blank>"]
    with pytest.raises(ValueError, match="input:2: expected source<TAB>target"):
        noise_tsv_lines(["a\tb", "no tab"], config)


def test_cli_noise_file(tmp_path):
    from mtadapt.cli import main

    src = tmp_path / "in.txt"
    src.write_text("one two three four\nfive six\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert main(["augment", "noise", "--input", str(src), "--output", str(out), "--word-dropout", "0",
                 "--shuffle-distance", "0", "--blank-prob", "1", "--blank-token", "_"]) == 0
    assert out.read_text(encoding="utf-8") == "_ _ _ _\n_ _\n"
    with pytest.raises(SystemExit) as exit_:  # refused by the option's range, before any work
        main(["augment", "noise", "--input", str(src), "--output", str(out), "--word-dropout", "2"])
    assert exit_.value.code == 2
    assert main(["augment", "noise", "--input", str(src), "--output", str(out), "--blank-token", "a b"]) == 2


def test_cli_augment_help(capsys):
    from mtadapt.cli import main

    for argv in (["augment", "--help"], ["augment", "noise", "--help"], ["augment", "backtranslate", "--help"], ["augment", "mix", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    assert "--outputs-per-sentence" in capsys.readouterr().out


def test_recipe_noise_setting_and_error():
    from mtadapt.config import ConfigError, config_from_dict

    config = config_from_dict({"data": {"noise": {"word_dropout": 0.2, "blank_prob": 0.1}}})
    assert config.data.noise == NoiseConfig(word_dropout=0.2, blank_prob=0.1)
    assert config_from_dict({}).data.noise is None
    with pytest.raises(ConfigError, match="data.noise: word_dropout must be a probability"):
        config_from_dict({"data": {"noise": {"word_dropout": 3}}})


def test_training_batches_get_fresh_noise_each_epoch(tiny_model_dir):
    """The loop's hook: noised sources re-tokenized per batch, other epochs other noise,
    targets untouched."""
    from mtadapt.augment.noise import training_noiser
    from mtadapt.config import DataConfig
    from mtadapt.data.prepare import ParallelTexts, tokenize_pairs
    from mtadapt.data.validation import DataReport
    from mtadapt.models.languages import PairCodec
    from mtadapt.models.loading import load_model

    loaded = load_model(str(tiny_model_dir("marian")))
    codec = PairCodec(loaded.family, loaded.tokenizer, None, None, loaded.decoder_start_token_id)
    src = ["the small dog sees a red house", "a old garden hears the fast dog"]
    pairs = tokenize_pairs(ParallelTexts(src, ["der kleine hund", "ein alter garten"], ["a", "b"], DataReport()), codec, None)
    data = DataConfig(noise=NoiseConfig(word_dropout=0.3, word_shuffle_distance=3))
    noiser = training_noiser(data, pairs)
    epoch0 = noiser.tokenized_pairs(pairs, [1, 0], 0, codec)
    assert epoch0 == noiser.tokenized_pairs(pairs, [1, 0], 0, codec)
    assert [t for _, t in epoch0] == [pairs.tgt_ids[1], pairs.tgt_ids[0]]
    assert epoch0[0][0] == codec.encode_sources([noiser(src[1], 1, 0)])[0]
    epochs = {tuple(map(tuple, (s for s, _ in noiser.tokenized_pairs(pairs, [0, 1], e, codec)))) for e in range(5)}
    assert len(epochs) > 1
    assert training_noiser(DataConfig(), pairs) is None


@pytest.mark.parametrize("recipe", sorted(Path(__file__).parents[1].glob("recipes/augment-*.yaml")), ids=lambda p: p.name)
def test_augment_recipes_validate(recipe):
    from mtadapt.config import load_recipe

    config = load_recipe(recipe)
    assert config.train.output_dir.startswith(("runs/augment-", "runs/bt-"))


@pytest.mark.parametrize("settings", [{"word_shuffle_distance": math.nan}, {"word_shuffle_distance": math.inf}])
def test_non_finite_shuffle_distance_is_refused(settings):
    """nan passed `< 0` and silently meant no shuffle (a recipe can give .nan; the CLI refuses it earlier)."""
    with pytest.raises(ValueError, match="word_shuffle_distance must be finite and >= 0"):
        NoiseConfig(**settings)


@pytest.mark.parametrize("settings", [{"sampling_temperature": math.nan}, {"max_length_ratio": math.nan}])
def test_non_finite_backtranslation_settings_are_refused(settings):
    from mtadapt.settings import BacktranslationConfig

    with pytest.raises(ValueError, match=f"{next(iter(settings))} must be"):
        BacktranslationConfig(**settings)
