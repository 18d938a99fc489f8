"""LibreTranslate parity of `mtadapt serve`: a real HTTP server (tiny:m2m100, no pairs configured:
every direction it knows) checked with clients nobody here wrote (libretranslatepy, deep-translator's
LibreTranslator, schemathesis) and with httpx in every encoding LibreTranslate reads (query
string, form, multipart, JSON). One server for the module."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest
import yaml

from mtadapt.errors import ConfigError
from mtadapt.inference.generation import GenerationConfig, translate, translate_ids
from mtadapt.models.families import get_family
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model
from mtadapt.serve.config import ServeConfig
from mtadapt.serve.engine import default_pairs
from mtadapt.serve.languages import LanguageDetector, every_direction, public_codes
from serve_support import ThreadServer

pytestmark = pytest.mark.xdist_group("test_serve_libretranslate")

GERMAN = ["Hallo Welt", "das Haus ist gross", "ein kleiner Hund"]
FACTOR = 1.0  # random tiny models rarely stop early: a short length limit keeps the tests fast
LIMITS = {"max_texts": 4, "max_chars": 60, "max_source_tokens": 100, "max_num_beams": 4}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The server, and per-sentence references: greedy de->en, and the 3-best of beam 3."""
    root = tmp_path_factory.mktemp("libretranslate")
    config = {"model": "tiny:m2m100", "dtype": "float32", "limits": LIMITS, "batching": {"max_length_factor": FACTOR}}
    (root / "serve.yaml").write_text(yaml.safe_dump(config))
    loaded = load_model("tiny:m2m100")
    loaded.model.eval()
    codec = PairCodec(loaded.family, loaded.tokenizer, "de", "en", loaded.decoder_start_token_id)
    greedy = [translate(loaded.model, codec, [t], GenerationConfig(max_length_factor=FACTOR))[0] for t in GERMAN]
    beam = GenerationConfig(num_beams=3, num_return_sequences=3, max_length_factor=FACTOR)
    nbest = [codec.decode(translate_ids(loaded.model, codec, codec.encode_sources([t]), beam)[0]) for t in GERMAN]
    with ThreadServer(root / "serve.yaml") as server:  # the app on uvicorn in a thread: no second interpreter
        yield {"url": server.url, "greedy": greedy, "nbest": nbest}


def _lingua(text: str) -> list[dict]:
    """What lingua itself says among German and English, in LibreTranslate's shape."""
    from lingua import Language, LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_languages(Language.GERMAN, Language.ENGLISH).build()
    codes = {Language.GERMAN: "de", Language.ENGLISH: "en"}
    return [{"confidence": round(100 * v.value, 2), "language": codes[v.language]}
            for v in detector.compute_language_confidence_values(text)]


def test_every_direction_the_family_knows_in_libretranslate_codes():
    mbart = load_model("tiny:mbart50")
    pairs = every_direction("facebook/mbart-large-50-many-to-many-mmt", mbart)  # a real name: the tokenizer's codes
    codes = mbart.family.language_codes(mbart.tokenizer)
    assert len(codes) == 52 and len(pairs) == 52 * 51
    by_public = {(p.source, p.target): (p.src_lang, p.tgt_lang) for p in pairs}
    assert by_public[("de", "en")] == ("de_DE", "en_XX") and by_public[("pt", "zh")] == ("pt_XX", "zh_CN")
    assert len(by_public) == len(pairs)  # no two model codes share a public code
    tiny = [(p.source, p.target, p.src_lang, p.tgt_lang) for p in every_direction("tiny:mbart50", mbart)]
    assert tiny == [("de", "en", "de_DE", "en_XX"), ("en", "de", "en_XX", "de_DE")]  # TOY_LANGUAGES
    # a run serves the directions it was trained on (each once), not every one its model knows
    runs = [("de_DE", "en_XX"), ("fr_XX", "en_XX"), ("de_DE", "en_XX")]
    trained = [(p.source, p.target, p.src_lang, p.tgt_lang) for p in default_pairs(ServeConfig(), "mbart", runs, mbart)]
    assert trained == [("de", "en", "de_DE", "en_XX"), ("fr", "en", "fr_XX", "en_XX")]
    assert public_codes(["zho_Hans", "zho_Hant", "deu_Latn"]) == {"zho_Hans": "zho_Hans", "zho_Hant": "zho_Hant", "deu_Latn": "deu"}
    multilingual_marian = SimpleNamespace(family=get_family("marian"), tokenizer=SimpleNamespace())  # no source_lang
    with pytest.raises(ConfigError, match=r"pairs: opus-mt-mul \(marian\) .* give the served direction"):
        every_direction("opus-mt-mul", multilingual_marian)


def test_detection_without_lingua_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lingua", None)  # import lingua -> ImportError
    detector = LanguageDetector(["de", "en"])
    assert not detector.available and "pip install 'mtadapt[serve]'" in detector.missing
    assert LanguageDetector(["de"]).detect("x") == [{"confidence": 100.0, "language": "de"}]  # one source: no choice


def test_languages_and_frontend_settings(served):
    url = served["url"]
    assert httpx.get(url + "/languages").json() == [{"code": "de", "name": "German", "targets": ["en"]},
                                                    {"code": "en", "name": "English", "targets": ["de"]}]
    settings = httpx.get(url + "/frontend/settings").json()
    files = {k: settings.pop(k) for k in ("filesTranslation", "supportedFilesFormat")}
    assert settings == {  # LibreTranslate's field names; the limits are the config's
        "charLimit": 60, "frontendTimeout": 500, "apiKeys": False, "keyRequired": False, "suggestions": False,
        "language": {"source": {"code": "auto", "name": "Auto Detect"}, "target": {"code": "en", "name": "English"}}}
    assert files["filesTranslation"] == bool(files["supportedFilesFormat"])


def test_python_clients_unchanged(served):
    from deep_translator import LibreTranslator
    from libretranslatepy import LibreTranslateAPI

    url, greedy = served["url"], served["greedy"]
    # deep-translator POSTs its parameters in the query string, with no body
    assert LibreTranslator(source="de", target="en", custom_url=url + "/", api_key="x").translate(GERMAN[1]) == greedy[1]
    client = LibreTranslateAPI(url)  # a form body
    assert client.translate(GERMAN[2], "de", "en") == greedy[2]
    assert client.detect(GERMAN[2]) == _lingua(GERMAN[2])
    assert client.languages()[0]["targets"] == ["en"]


def test_every_encoding_gives_the_same_answer(served):
    url, greedy = served["url"] + "/translate", served["greedy"]
    one = {"q": GERMAN[0], "source": "de", "target": "en"}
    with httpx.Client(timeout=60) as client:
        answers = [client.post(url, params=one), client.post(url, data=one), client.post(url, json=one),
                   client.post(url, files={k: (None, v) for k, v in one.items()}),  # multipart/form-data
                   client.post(url, params={"q": GERMAN[0]}, data={"source": "de", "target": "en"})]  # both merged
        for r in answers:
            assert r.status_code == 200, r.text
            assert r.json()["translatedText"] == greedy[0]
        several = [("q", GERMAN[0]), ("q", GERMAN[1]), ("source", "de"), ("target", "en")]
        for r in (client.post(url, params=several), client.post(url, data=dict(one, q=GERMAN[:2])),
                  client.post(url, json=dict(one, q=GERMAN[:2]))):
            assert r.json()["translatedText"] == greedy[:2], r.text
        for kwargs, field in [({"params": {"source": "de", "target": "en"}}, "q"),
                              ({"params": one, "data": {"q": "noch einmal"}}, "q"),  # given twice
                              ({"data": dict(one, alternatives="zwei")}, "alternatives"),
                              ({"json": dict(one, alternatives=4)}, "alternatives"),  # 5 beams > max_num_beams 4
                              ({"json": dict(one, target="fr")}, "target"),
                              ({"json": dict(one, q=" ")}, "q")]:
            r = client.post(url, **kwargs)
            assert r.status_code == 400 and r.json()["field"] == field and r.json()["error"].startswith(field), (kwargs, r.text)


def test_alternatives_come_from_the_beams_n_best_list(served):
    url, nbest = served["url"] + "/translate", served["nbest"]
    r = httpx.post(url, json={"q": GERMAN[0], "source": "de", "target": "en", "alternatives": 2}, timeout=60)
    distinct = lambda h: list(dict.fromkeys(a for a in h[1:] if a != h[0]))  # noqa: E731
    assert r.json()["translatedText"] == nbest[0][0] and r.json()["alternatives"] == distinct(nbest[0])
    r = httpx.post(url, data={"q": GERMAN[1:], "source": "de", "target": "en", "alternatives": "2"}, timeout=60)
    assert r.json()["translatedText"] == [h[0] for h in nbest[1:]]
    assert r.json()["alternatives"] == [distinct(h) for h in nbest[1:]]
    assert "alternatives" not in httpx.post(url, json={"q": GERMAN[0], "source": "de", "target": "en"}).json()


def test_auto_detects_each_text_among_the_served_sources(served):
    url, greedy = served["url"], served["greedy"]
    english = "the house is big and the dog is small"
    r = httpx.post(url + "/translate", json={"q": [GERMAN[2], english], "source": "auto", "target": "en"}, timeout=60)
    assert r.status_code == 200, r.text
    # German is translated; English into English is the text unchanged (LibreTranslate's identity)
    assert r.json()["translatedText"] == [greedy[2], english]
    assert r.json()["detectedLanguage"] == [_lingua(GERMAN[2])[0], _lingua(english)[0]]
    assert [d["language"] for d in r.json()["detectedLanguage"]] == ["de", "en"]
    r = httpx.post(url + "/translate", data={"q": GERMAN[2], "source": "auto", "target": "en"})
    assert r.json()["detectedLanguage"] == _lingua(GERMAN[2])[0] and r.json()["translatedText"] == greedy[2]
    detected = httpx.post(url + "/detect", params={"q": english}).json()
    assert detected == _lingua(english) and sum(d["confidence"] for d in detected) == pytest.approx(100, abs=0.02)


def test_openapi_names_the_served_languages_and_limits_and_schemathesis_passes(served, tmp_path):
    spec = httpx.get(served["url"] + "/openapi.json").json()
    body = spec["paths"]["/translate"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded", "multipart/form-data"} <= set(body)
    props = body["application/json"]["schema"]["properties"]
    assert props["source"]["enum"] == ["de", "en", "auto"] and props["target"]["enum"] == ["de", "en"]
    assert props["q"]["anyOf"][0]["maxLength"] == 60 and props["q"]["anyOf"][1]["maxItems"] == 4
    assert props["alternatives"]["maximum"] == 3
    native = spec["paths"]["/v1/translate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"src_lang", "texts"} <= set(native["required"])  # two sources: no default direction
    assert native["properties"]["tgt_lang"]["anyOf"][1] == {"type": "null"}  # each source has one target: its default
    # /translate_file: whether a file can be translated (its extension, its encoding, its .po syntax)
    # is beyond what OpenAPI can say, and schemathesis uploads PNG bytes as file.png: a 400 naming
    # the problem (or a 413 over files.max_file_bytes) is the right answer there
    (tmp_path / "schemathesis.toml").write_text('[[operations]]\ninclude-path = "/translate_file"\n'
                                                'checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "413"]\n')
    # every check on every operation, bounded: a fixed seed, 10 examples an operation, 15 s in all
    # (a request may take longer than schemathesis' 10 s default when the machine is busy)
    # Two runs. /translate and /detect also take forms and multipart, where every value is text: a
    # value the fuzzer makes schema-invalid by its type (api_key: null, a number) arrives as the
    # string "null" or "5", a valid string, so negative_data_rejection cannot hold there (their
    # JSON bodies' bad values are tested above and in test_serve); every other check runs on them,
    # and every check on every other operation.
    forms = "^/(translate|detect)$"
    for selection in (["--exclude-path-regex", forms], ["--include-path-regex", forms, "--exclude-checks", "negative_data_rejection"]):
        run = subprocess.run([sys.executable, "-m", "schemathesis.cli", "run", served["url"] + "/openapi.json", "--checks", "all",
                              *selection, "--max-examples", "10", "--max-time", "15", "--seed", "1", "--request-timeout", "60",
                              "--no-color"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
