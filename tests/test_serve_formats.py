"""`format: "html"`, protected placeholders and `/translate_file` (.txt, .html, .po) with its
download, over HTTP (httpx) against a real server on a free port (tiny:m2m100, de->en; uvicorn
in a thread of the test process).

The tiny model is random: it keeps no mask token, so every placeholder goes missing and every
HTML segment loses its markup. That is the case to test: the server must say so (warnings and
the counter), and the HTML must still hold every tag and attribute it was sent."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import httpx
import polib
import pytest
import yaml

from serve_support import ThreadServer
from test_html_markup import MASTODON, elements
from test_translate_po import CATALOG

pytestmark = pytest.mark.xdist_group("test_serve_formats")
EXPIRY_S = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-formats")
    config = {
        "model": "tiny:m2m100", "dtype": "float32", "pairs": [{"source": "de", "target": "en"}],
        "limits": {"max_texts": 8, "max_chars": 600, "max_source_tokens": 200},
        "batching": {"max_length_factor": 1.0, "max_wait_ms": 1},  # random tiny models rarely stop early
        "files": {"max_file_bytes": 5000, "expiry_s": EXPIRY_S, "folder": "files"},
    }
    (root / "serve.yaml").write_text(yaml.safe_dump(config))
    with ThreadServer(root / "serve.yaml") as server:  # the app on uvicorn in a thread: no second interpreter
        yield {"url": server.url, "root": root}


def problems_counted(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'^mtadapt_placeholder_problems_total\{kind="(\w+)"\} (\S+)$', text, re.M)}


def test_html_keeps_every_tag_and_attribute_and_says_what_the_model_lost(server):
    before = problems_counted(server["url"])
    r = httpx.post(server["url"] + "/translate", json={"q": MASTODON, "source": "de", "target": "en", "format": "html"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    out = body["translatedText"]
    assert elements(out) == elements(MASTODON)
    assert '<span class="h-card" translate="no"><a href="https://mastodon.social/@Gargron" class="u-url mention">@<span>Gargron' in out
    assert "the cat sleeps" not in out  # translated (into the random model's words)
    kinds = [w["kind"] for w in body["warnings"]]
    assert "markup" in kinds and all(w["where"].startswith("q[0]") and w["message"] for w in body["warnings"])
    after = problems_counted(server["url"])
    for kind in set(kinds):
        assert after[kind] - before.get(kind, 0) == kinds.count(kind)


def test_v1_html_list_and_form_bodies(server):
    texts = ["<p>ein <b>Hund</b><br>und <a href='/k'>eine Katze</a></p>", "<ul><li>eins</li><li>zwei <i>drei</i></li></ul>"]
    r = httpx.post(server["url"] + "/v1/translate", json={"texts": texts, "format": "html"}, timeout=60)
    assert r.status_code == 200, r.text
    outs = r.json()["translations"]
    assert [elements(o) for o in outs] == [elements(t) for t in texts]
    assert {w["where"].split(",")[0] for w in r.json()["warnings"]} <= {"texts[0]", "texts[1]"}
    r = httpx.post(server["url"] + "/translate", data={"q": texts[0], "source": "de", "target": "en", "format": "html"}, timeout=60)
    assert r.status_code == 200 and elements(r.json()["translatedText"]) == elements(texts[0])


def test_a_lost_placeholder_is_a_warning_and_counted_never_silent(server):
    before = problems_counted(server["url"])
    q = ["Hallo %(name)s, du hast {count} neue Nachrichten", "das Haus ist gross"]
    r = httpx.post(server["url"] + "/translate", json={"q": q, "source": "de", "target": "en"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    missing = [(w["where"], w["placeholder"]) for w in body["warnings"] if w["kind"] == "missing"]
    for placeholder in ("%(name)s", "{count}"):  # the random model copies no mask token
        assert (placeholder in body["translatedText"][0]) != (("q[0]", placeholder) in missing)
    assert all(where == "q[0]" for where, _ in missing) and len(missing) >= 1
    assert problems_counted(server["url"])["missing"] - before.get("missing", 0) == len(body["warnings"])
    r = httpx.post(server["url"] + "/translate", json={"q": q, "source": "de", "target": "en", "protect_placeholders": False},
                   timeout=60)
    assert r.status_code == 200 and "warnings" not in r.json()  # nothing masked, nothing to check: LibreTranslate's shape
    r = httpx.post(server["url"] + "/translate", json={"q": q[0], "source": "de", "target": "en", "format": "xml"}, timeout=60)
    assert r.status_code == 400 and r.json()["field"] == "format"


def _upload(server, name: str, content: bytes, **fields):
    return httpx.post(server["url"] + "/translate_file", files={"file": (name, content)},
                      data={"source": "de", "target": "en", **fields}, timeout=120)


def _download(server, response) -> httpx.Response:
    assert response.status_code == 200, response.text
    url = response.json()["translatedFileUrl"]
    assert url.startswith(server["url"] + "/download_file/")
    return httpx.get(url, timeout=30)


def test_translate_file_txt_and_html_download(server):
    txt = "erste Zeile mit %s\n\n  zweite Zeile  \r\ndritte\n".encode()
    r = _upload(server, "notes.txt", txt)
    got = _download(server, r)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain")
    assert got.headers["content-disposition"] == 'attachment; filename="notes.en.txt"'
    lines = got.content.decode().split("\n")
    assert len(lines) == 5 and lines[1] == "" and lines[2].startswith("  ") and lines[2].endswith("  \r") and lines[4] == ""
    assert all(w["where"] == "line 1" for w in r.json()["warnings"])
    page = f"<!DOCTYPE html>\n<html><head><title>Die Seite</title></head><body>{MASTODON}</body></html>".encode()
    r = _upload(server, "page.html", page)
    got = _download(server, r)
    assert got.headers["content-type"].startswith("text/html") and r.json()["translatedFileUrl"].endswith("/page.en.html")
    assert elements(got.content.decode()) == elements(page.decode()) and got.content.startswith(b"<!DOCTYPE html>")


def test_translate_file_po_round_trip_rereads_and_passes_msgfmt(server, tmp_path):
    r = _upload(server, "app.po", CATALOG.encode())
    got = _download(server, r)
    assert got.headers["content-type"].startswith("text/x-gettext-translation")
    path = tmp_path / "app.en.po"
    path.write_bytes(got.content)
    source, out = polib.pofile(CATALOG), polib.pofile(str(path))
    assert [(e.msgctxt, e.msgid, e.msgid_plural, e.comment, e.occurrences) for e in out] == \
           [(e.msgctxt, e.msgid, e.msgid_plural, e.comment, e.occurrences) for e in source]
    assert out.metadata == source.metadata and len(out.obsolete_entries()) == len(source.obsolete_entries())
    by_id = {e.msgid: e for e in out}
    assert by_id["the red car"].msgstr == "o carro vermelho" and "fuzzy" not in by_id["the red car"].flags  # kept
    assert by_id["the old man"].msgstr == "o homem velho" and "fuzzy" in by_id["the old man"].flags
    plural = by_id["%d tree"]
    assert sorted(plural.msgstr_plural) == [0, 1] and all(plural.msgstr_plural.values())
    assert plural.flags == ["fuzzy", "python-format"] and by_id["the house"].msgctxt == "menu"
    filled = [e for e in out if e.msgid in ("the dog sees the cat", "the woman %(name)s finds the book", "the house")]
    assert all(e.msgstr and "fuzzy" in e.flags for e in filled)
    lines = {w["where"] for w in r.json()["warnings"]}
    assert lines and lines <= {"line 17", "line 22", "line 34"}  # entries with placeholders, by their first line
    if shutil.which("msgfmt") is None:
        pytest.skip("msgfmt not installed (Debian: apt-get install gettext)")
    check = subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_openapi_describes_the_upload_with_the_served_directions(server):
    upload = httpx.get(server["url"] + "/openapi.json").json()["paths"]["/translate_file"]["post"]["requestBody"]
    schema = upload["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file", "source", "target"] and schema["properties"]["file"]["format"] == "binary"
    assert schema["properties"]["source"]["enum"] == ["de"] and schema["properties"]["target"]["enum"] == ["en"]
    assert schema["properties"]["adapter"]["enum"] == ["__base__"]


@pytest.mark.parametrize("name, content, status, words", [
    ("app.docx", b"PK\x03\x04", 400, ["'.docx'", ".txt", ".po"]),
    ("big.txt", b"a" * 5001, 413, ["5001 bytes", "5000", "files.max_file_bytes"]),
    ("latin.txt", "ok\nGr\xfc\xdfe".encode("latin-1"), 400, ["not valid UTF-8", "line 2"]),
    ("bad.po", b'msgid "a"\nmsgstr "b"\nthis is not po\n', 400, ["not a valid gettext catalog", "line 3"]),
], ids=["extension", "too-big", "not-utf8", "bad-po"])
def test_translate_file_refusals_name_the_problem(server, name, content, status, words):
    r = _upload(server, name, content)
    assert r.status_code == status, r.text
    assert r.json()["field"] == "file" and all(w in r.json()["error"] for w in words), r.json()


def test_downloads_expire_and_ids_are_checked(server):
    r = _upload(server, "short.txt", b"ein Hund\n")
    url = r.json()["translatedFileUrl"]
    assert httpx.get(url).status_code == 200
    base = url.rsplit("/", 2)[0]
    assert httpx.get(base + "/not-an-id/short.en.txt").status_code == 404
    assert httpx.get(url.rsplit("/", 1)[0] + "/other.txt").status_code == 404
    time.sleep(EXPIRY_S + 0.5)
    gone = httpx.get(url)
    assert gone.status_code == 404 and "files.expiry_s" in gone.json()["error"]
    assert not any((server["root"] / "files").iterdir())  # deleted, not only hidden
