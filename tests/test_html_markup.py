"""HTML translated block by block (mtadapt.data.html_markup): segments, inline markup kept in
place or the run's structure kept, untouched parts, entities as written, tag multisets equal."""

from collections import Counter

import lxml.html
import pytest

from mtadapt.data.html_markup import rewritten, translate_html
from mtadapt.data.placeholders import usable_styles

# Mastodon's HTML: <p> with <br>, an h-card mention, a #hashtag link, emoji, entities, nested tags
MASTODON = ('<p><span class="h-card" translate="no"><a href="https://mastodon.social/@Gargron" class="u-url mention">'
            '@<span>Gargron</span></a></span> the cat sleeps on <b>the <i>red</i> chair</b> &amp; dreams 🐈<br>'
            'see <a href="https://mastodon.social/tags/cats" class="mention hashtag" rel="tag">#<span>cats</span></a> '
            '&lt;3</p><p>second&nbsp;paragraph with <a href="https://example.org/x?a=1&amp;b=2" title="a link" '
            'rel="nofollow noopener" target="_blank"><span class="invisible">https://</span>'
            '<span class="ellipsis">example.org/x</span></a></p>')
DOCUMENT = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>The house</title>'
            '<style>p { color: red }</style><script>var s = "a &amp; b <b>";</script></head>'
            '<body><h1>The big house</h1><div>some <em>text</em><p>a paragraph</p>the tail</div>'
            '<pre>keep   this <b>code</b></pre><p>run <code>make test</code> now, <img src="a.png" alt="a green tree"></p>'
            '<!-- a comment --><ul><li>one</li><li title="second item">two <a href="#">links</a></li></ul>'
            '<table><tr><td>cell</td></tr></table></body></html>')
CASES = [MASTODON, DOCUMENT, '<p>Hi <b>%(name)s</b>, you have {count} new <a href="/m">messages</a></p>',
         'plain text with no tags', '<p>unclosed <b>bold<p>next']


def elements(markup: str) -> Counter:
    """The multiset of (tag, attributes) of a fragment or document, alt/title values aside."""
    root = (lxml.html.document_fromstring(markup) if markup.lstrip().lower().startswith(("<!doctype", "<html"))
            else lxml.html.fragment_fromstring(markup, create_parent="div"))
    return Counter((el.tag, tuple(sorted((k, None if k in ("alt", "title") else v) for k, v in el.attrib.items())))
                   for el in root.iter() if isinstance(el.tag, str))


def identity(texts):
    return list(texts)


def upper(texts):  # a "translation" whose every change is visible; mask tokens are upper case already
    return [t.upper() for t in texts]


def reverse_words(texts):  # moves tags around: "<b>a</b> b" -> "b <b>a</b>" when tokens are words
    return [" ".join(reversed(t.split(" "))) for t in texts]


def drop_first_token(texts):
    return [t.replace("PH0", "", 1) for t in texts]


def garbage(texts):  # a random tiny model: keeps nothing
    return ["xyz" for _ in texts]


@pytest.mark.parametrize("translate", [identity, upper, reverse_words, drop_first_token, garbage])
@pytest.mark.parametrize("markup", CASES)
def test_tags_and_attributes_in_equal_tags_and_attributes_out(markup, translate):
    out, _ = translate_html(markup, translate)
    assert elements(out) == elements(markup)
    assert rewritten(out) == out  # parsed again, written again: nothing to repair


def test_identity_keeps_mastodon_html_exactly():
    assert translate_html(MASTODON, identity) == (MASTODON, [])


def test_one_segment_per_block_with_inline_markup_masked():
    seen = []
    translate_html(MASTODON, lambda texts: seen.extend(texts) or list(texts))
    # the h-card is translate="no": one placeholder; entities are placeholders; <br> inside the
    # segment; `&lt;3` would read PH113, so that segment takes the next style; tokens glued to a
    # word are spaced from it (and the spaces taken off again)
    assert seen == ["[0] the cat sleeps on [1] the [2] red [3] chair [4] [5] dreams 🐈 [6] see [7] # [8] cats [9] [10] [11] 3",
                    "a link", "second PH0 paragraph with PH1 PH2 https:// PH3 PH4 example.org/x PH5 PH6"]


def test_translation_reaches_text_alt_title_but_not_untouched_parts():
    out, warnings = translate_html(DOCUMENT, upper)
    assert warnings == []
    assert "<title>THE HOUSE</title>" in out and "<h1>THE BIG HOUSE</h1>" in out
    assert "<div>SOME <em>TEXT</em><p>A PARAGRAPH</p>THE TAIL</div>" in out
    assert '<style>p { color: red }</style><script>var s = "a &amp; b <b>";</script>' in out
    assert "<pre>keep   this <b>code</b></pre>" in out and "<!-- a comment -->" in out
    assert '<p>RUN <code>make test</code> NOW, <img src="a.png" alt="A GREEN TREE"></p>' in out
    assert '<li title="SECOND ITEM">TWO <a href="#">LINKS</a></li>' in out and out.startswith("<!DOCTYPE html>\n")


def test_entities_come_out_as_written():
    out, _ = translate_html(MASTODON, upper)
    for entity in ("&amp; DREAMS", "&lt;3", "SECOND&nbsp;PARAGRAPH", 'href="https://example.org/x?a=1&amp;b=2"'):
        assert entity in out
    assert '<span class="h-card" translate="no"><a href="https://mastodon.social/@Gargron" class="u-url mention">@<span>Gargron' in out


def test_moved_tags_are_rebuilt_where_the_model_put_them():
    out, warnings = translate_html('<p>the <b>red</b> car</p>', lambda t: ["o carro PH0vermelhoPH1"])
    assert (out, warnings) == ("<p>o carro <b>vermelho</b></p>", [])


def test_lost_markup_keeps_the_structure_and_says_so():
    calls = []

    def model(texts):
        calls.append(list(texts))
        return ["o carro vermelho" if len(calls) == 1 else t.upper() for t in texts]

    out, warnings = translate_html("<p>the <b>red</b> car</p>", model)
    assert calls == [["the PH0 red PH1 car"], ["the", "red", "car"]]
    assert out == "<p>THE <b>RED</b> CAR</p>"
    assert [(w.kind, w.segment) for w in warnings] == [("markup", "the red car")]
    assert "<b>, </b>" in warnings[0].message


def test_text_placeholders_protected_and_losses_reported():
    markup = "<p>Hello %(name)s, {count} new &amp; more</p>"
    out, warnings = translate_html(markup, lambda t: [x.replace("PH0", "") for x in t])
    assert out == "<p>Hello  , {count} new &amp; more</p>"  # "Hello PH0 , ..." lost PH0, kept its spaces
    assert [(w.kind, w.placeholder) for w in warnings] == [("missing", "%(name)s")]
    out, warnings = translate_html(markup, lambda t: [x + " PH2" for x in t])  # PH2 is &amp;
    assert out == "<p>Hello %(name)s, {count} new &amp; more &amp;</p>" and warnings[0].kind == "duplicated"
    seen = []
    translate_html(markup, lambda t: seen.extend(t) or t, protect=False)
    assert seen == ["Hello %(name)s, {count} new PH0 more"]  # entities stay masked: they are markup


def test_spaces_put_around_glued_tokens_come_off_again():
    out, warnings = translate_html("<p>the <b>red</b> car<br>is&nbsp;here</p>",
                                   lambda t: [x.replace("the", "o").replace("red", "vermelho") for x in t])
    assert (out, warnings) == ("<p>o <b>vermelho</b> car<br>is&nbsp;here</p>", [])


@pytest.mark.parametrize("markup", ["a\x1eb \x00 <p title='t\x0f'>x</p>", "<!DOCTYPE html>", "<!-- only -->", "</b>"])
def test_control_characters_and_empty_documents_come_through(markup):
    out, warnings = translate_html(markup, upper)
    assert all(c in out for c in "\x1e\x00\x0f" if c in markup) and warnings == []
    assert rewritten(markup) in (markup.replace("'", '"'), "")  # a stray end tag is no element: dropped


def test_a_real_tokenizer_keeps_the_masks_of_a_mastodon_post():
    from mtadapt.models.loading import load_model

    loaded = load_model("tiny:m2m100")
    styles = usable_styles(lambda text: loaded.tokenizer.decode(loaded.tokenizer(text)["input_ids"], skip_special_tokens=True))
    assert styles
    ids = lambda texts: [loaded.tokenizer.decode(loaded.tokenizer(t)["input_ids"], skip_special_tokens=True) for t in texts]
    out, warnings = translate_html(MASTODON, ids, styles=styles)
    assert elements(out) == elements(MASTODON)
    assert [w for w in warnings if w.kind != "missing"] == []
