"""The page at `/` in a real headless Chromium (Debian's `chromium`, driven by Playwright;
no browser is downloaded) against the serve app on uvicorn on a free port (tiny:m2m100, two
random LoRA adapters, API keys).

The README's screenshot comes from this test: run it with MTADAPT_UPDATE_SCREENSHOT=1 to
rewrite docs/images/serve-page.png (otherwise it goes to the test's tmp dir, so that a test
run leaves the tree clean).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import httpx
import polib
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from mtadapt.methods import base, lora
from mtadapt.models.loading import load_model
from serve_support import ThreadServer, make_adapter

pytestmark = pytest.mark.xdist_group("test_serve_page")

CHROMIUM = Path(os.environ.get("MTADAPT_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "serve-page.png"
KEY_ALL, KEY_ONE = "key-page-all", "key-page-one"  # every adapter and the base; lora2 only, no base
SENTENCES = ["das Haus ist gross", "ein kleiner Hund"]
BASE_LABEL = "base (no adapter)"
expect.set_options(timeout=30_000)  # the suite shares 2 cores: a translation can take seconds under load

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (apt-get install chromium; `make setup` "
                "does it when run as root) or point MTADAPT_CHROMIUM at one", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A served tiny:m2m100 with random LoRA adapters lora1 and lora2, and two API keys."""
    root = tmp_path_factory.mktemp("page")
    loaded = load_model("tiny:m2m100")
    parameters = {}
    for name, rank, seed in (("lora1", 4, 11), ("lora2", 2, 12)):
        make_adapter(loaded.model, loaded.family.targets, lora.LoraConfig(rank=rank, alpha=2 * rank), name, root / name, seed)
        parameters[name] = sum(p.numel() for _, layer in base.adapter_layers(loaded.model)
                               if name in layer.adapter_names() for p in layer.adapter_parameters(name))
    config = {
        "model": "tiny:m2m100", "dtype": "float32",
        "adapters": [{"name": n, "path": str(root / n)} for n in parameters],
        "pairs": [{"source": "de", "target": "en"}],
        "api_keys": [{"tenant": "all", "key": KEY_ALL, "adapters": ["*"]},
                     {"tenant": "one", "key": KEY_ONE, "adapters": ["lora2"], "base": False}],
        "limits": {"max_chars": 500},
        "batching": {"max_wait_ms": 5, "max_length_factor": 1.0},  # random tiny models rarely stop early
    }
    (root / "serve.yaml").write_text(yaml.safe_dump(config))
    with ThreadServer(root / "serve.yaml") as server:
        yield {"url": server.url, "root": root, "parameters": parameters}


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server["url"])
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    yield page
    context.close()
    assert not errors, errors  # no uncaught JavaScript error


def _use_key(page: Page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()


def _adapter_rows(page: Page) -> list[list[str]]:
    return [[c.strip() for c in row.locator("td").all_inner_texts()] for row in page.locator("#adapters tbody tr").all()]


def _translate(url: str, key: str, adapter: str, texts: list[str], **extra) -> httpx.Response:
    return httpx.post(url + "/v1/translate", json={"texts": texts, "adapter": adapter, **extra},
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Length of a longest common subsequence (the page's diff keeps exactly that many words)."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev, row = row, [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
    return row[-1]


def test_the_page_lists_only_the_adapters_of_the_key(page, server):
    expect(page.get_by_role("alert")).to_contain_text("api_key: missing")  # keys configured, none given
    expect(page.get_by_role("status")).to_have_text("This server needs an API key: enter one above.")  # /frontend/settings
    expect(page.locator("#text-limit")).to_have_text("At most 500 characters per line.")
    assert _adapter_rows(page) == []
    _use_key(page, KEY_ONE)
    expect(page.locator("#adapters tbody tr")).to_have_count(1)
    assert [r[1] for r in _adapter_rows(page)] == ["lora2"]  # no base: this key may not use it
    _use_key(page, KEY_ALL)
    expect(page.locator("#adapters tbody tr")).to_have_count(3)
    rows = _adapter_rows(page)
    assert [r[1:3] for r in rows] == [[BASE_LABEL, "none"], ["lora1", "lora"], ["lora2", "lora"]]
    n = server["parameters"]
    assert n["lora1"] == 2 * n["lora2"] > 0  # rank 4 against rank 2
    assert [r[3] for r in rows[1:]] == [f"{n['lora1']:,}", f"{n['lora2']:,}"]
    sizes = {a["name"]: a["bytes"] for a in httpx.get(server["url"] + "/v1/adapters", headers={"X-API-Key": KEY_ALL}).json()["adapters"]}
    assert [r[4] for r in rows[1:]] == [f"{sizes['lora1'] / 1024:.1f} KiB", f"{sizes['lora2'] / 1024:.1f} KiB"]
    # the labels name the checkboxes (accessible markup); ticked at first: the base and the first adapter
    assert [page.get_by_label(name).is_checked() for name in (BASE_LABEL, "lora1", "lora2")] == [True, True, False]


def test_two_adapters_side_by_side_with_differences_marked(page, server, tmp_path):
    _use_key(page, KEY_ALL)
    expect(page.locator("#adapters tbody tr")).to_have_count(3)
    page.get_by_label("lora1").check()
    page.get_by_label("lora2").check()
    page.get_by_label("Text to translate").fill("\n".join(SENTENCES))
    page.get_by_role("button", name="Translate", exact=True).click()
    columns = page.locator("#results .column")
    expect(columns.locator(".output")).to_have_count(3)
    expected = {name: "\n".join(_translate(server["url"], KEY_ALL, name, SENTENCES).json()["translations"])
                for name in ("__base__", "lora1", "lora2")}
    assert len(set(expected.values())) == 3  # the random adapters change the output
    shown = {c.get_attribute("data-adapter"): c.locator(".output").inner_text() for c in columns.all()}
    assert shown == expected
    for column in columns.all():
        assert re.fullmatch(r"\d+ ms \(server \d+ ms\)", column.locator(".latency").inner_text())

    # differences against a chosen reference: exactly the words outside a longest common subsequence
    page.get_by_label("Highlight differences against").select_option("lora1")
    lora2 = page.locator('#results .column[data-adapter="lora2"]')
    words1, words2 = expected["lora1"].split(), expected["lora2"].split()
    differing = len(words2) - _lcs_length(words1, words2)
    assert differing > 0
    marked = lora2.locator("mark.diff").all_inner_texts()
    assert len(marked) == differing
    expect(lora2.locator(".diff-count")).to_have_text(f"{differing} word(s) differ from lora1")
    expect(page.locator('#results .column[data-adapter="lora1"] mark')).to_have_count(0)

    png = tmp_path / "serve-page.png"
    page.screenshot(path=str(png), full_page=True)
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24])[0] == 1280
    if os.environ.get("MTADAPT_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png.read_bytes())


def test_word_diff_in_the_browser(page):
    """diff.js on cases worked out by hand."""
    result = page.evaluate("""async () => {
        const { wordDiff, MAX_CELLS } = await import("./static/diff.js");
        const marked = (parts) => parts.filter((p) => !p.same).map((p) => p.text);
        const joined = (parts) => parts.map((p) => p.text).join("");
        const cases = [["a b c d", "a x c d"], ["the cat sat", "the the cat"], ["", "two words"], ["a  b\\nc", "a b c"]];
        const out = cases.map(([a, b]) => { const d = wordDiff(a, b); return [marked(d.a), marked(d.b), joined(d.a), joined(d.b)]; });
        const long = Array(2100).fill("w").join(" ");
        return { out, tooLong: wordDiff(long, long) === null, cells: MAX_CELLS };
    }""")
    assert result["out"] == [
        [["b"], ["x"], "a b c d", "a x c d"],
        [["sat"], ["the"], "the cat sat", "the the cat"],
        [[], ["two", "words"], "", "two words"],
        [[], [], "a  b\nc", "a b c"],  # whitespace is kept as typed, and never marked
    ]
    assert result["tooLong"] and result["cells"] == 4_000_000


def test_html_mode_shows_markup_as_text(page, server):
    probe = _translate(server["url"], KEY_ALL, "lora1", ["<p>ein <b>kleiner</b> Hund</p>"], format="html")
    assert probe.status_code == 200, probe.text
    _use_key(page, KEY_ALL)
    expect(page.locator("#adapters tbody tr")).to_have_count(3)
    page.get_by_label(BASE_LABEL).uncheck()
    page.get_by_label("lora1").check()
    page.get_by_label("HTML mode").check()
    page.get_by_label("Text to translate").fill("<p>ein <b>kleiner</b> Hund</p>")
    page.get_by_role("button", name="Translate", exact=True).click()
    output = page.locator('#results .column[data-adapter="lora1"] .output')
    expect(output).to_have_text(probe.json()["translations"][0])
    assert "<b>" in output.inner_text()  # the markup is shown as text ...
    expect(output.locator("p, b")).to_have_count(0)  # ... never parsed into elements


def test_placeholder_warnings_are_shown_under_their_column(page, server):
    text = "Hallo %s, du hast {count} neue Nachrichten"
    probe = _translate(server["url"], KEY_ALL, "lora1", [text]).json()
    expected = [w["message"] for w in probe["warnings"]]
    assert expected  # a random adapter loses or repeats a placeholder: something to show
    _use_key(page, KEY_ALL)
    expect(page.locator("#adapters tbody tr")).to_have_count(3)
    page.get_by_label(BASE_LABEL).uncheck()
    page.get_by_label("Text to translate").fill(text)
    page.get_by_role("button", name="Translate", exact=True).click()
    column = page.locator('#results .column[data-adapter="lora1"]')
    expect(column.locator(".output")).to_have_text(probe["translations"][0])
    expect(column.get_by_role("list", name="warnings").locator("li")).to_have_text(expected)


def test_upload_a_po_file_and_download_the_translation(page, server, tmp_path):
    catalog = polib.POFile()
    catalog.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": "en"}
    for sentence in SENTENCES:
        catalog.append(polib.POEntry(msgid=sentence, msgstr=""))
    po = tmp_path / "app.po"
    catalog.save(str(po))
    _use_key(page, KEY_ALL)
    expect(page.locator("#adapters tbody tr")).to_have_count(3)
    expect(page.locator("#file-formats")).to_contain_text(".po")  # from /frontend/settings
    page.get_by_label("File to translate").set_input_files(str(po))
    page.get_by_label("with adapter").select_option("lora1")
    page.get_by_role("button", name="Translate file").click()
    link = page.locator("#download")
    expect(link).to_have_text(re.compile(r"Download app(\.en)?\.po"))
    with page.expect_download() as download:
        link.click()
    translated = polib.pofile(Path(download.value.path()).read_text(encoding="utf-8"))
    expected = _translate(server["url"], KEY_ALL, "lora1", SENTENCES).json()["translations"]
    assert [(e.msgid, e.msgstr) for e in translated] == list(zip(SENTENCES, expected))
