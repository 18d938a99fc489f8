"""`mtadapt serve` end to end: a real uvicorn server in a subprocess (tiny:m2m100 with LoRA,
Houlsby, prefix, prompt and PEFT-LoRA adapters), checked over HTTP with httpx and the PyPI
libretranslatepy client. One server for the whole module."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.error

import httpx
import pytest
import yaml

from mtadapt.inference.generation import GenerationConfig, translate
from mtadapt.methods import base, lora, storage
from mtadapt.methods.bottleneck import HoulsbyConfig
from mtadapt.methods.peft_interop import export_lora_to_peft, import_peft_lora
from mtadapt.methods.prefix import PrefixConfig
from mtadapt.methods.prompt import PromptConfig
from mtadapt.methods.routing import AdapterSet
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model
from serve_support import ServerProcess, randomize_adapter

# one worker runs the whole module: the served fixture (adapters, references, a server) is built once
pytestmark = pytest.mark.xdist_group("test_serve")

ALL = {"Authorization": "Bearer key-all-7890"}
ADMIN = {"X-API-Key": "key-admin-000"}
TEXTS = ["Hallo Welt", "das Haus ist gross", "ein kleiner Hund", "der Tag"]
FACTOR = 1.0  # random tiny models rarely stop early: a short length limit keeps the tests fast
ADAPTERS = {  # name -> (config, seed)
    "lora1": (lora.LoraConfig(rank=4, alpha=8), 1),
    "lora2": (lora.LoraConfig(rank=2, alpha=4), 2),
    "houlsby": (HoulsbyConfig(bottleneck_dim=8), 3),
    "prefix": (PrefixConfig(prefix_length=3, reparameterize=False), 4),
    "prompt": (PromptConfig(prompt_length=3), 5),
}


def _reference_model(folders=None):
    """The base with every adapter loaded (names as in `folders`; "peft" imported from PEFT)."""
    loaded = load_model("tiny:m2m100")
    for name, folder in (folders or {}).items():
        if name == "peft":
            import_peft_lora(loaded.model, folder, name)
        else:
            storage.load_adapter(loaded.model, folder, loaded.family.targets, name)
    base.set_active_adapters(loaded.model, [])
    loaded.model.eval()
    return loaded, PairCodec(loaded.family, loaded.tokenizer, "de", "en", loaded.decoder_start_token_id)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Adapter folders, per-sentence references (greedy and beam 3), and the running server."""
    root = tmp_path_factory.mktemp("serve")
    (root / "adapters").mkdir()
    (root / "outside").mkdir()
    loaded = load_model("tiny:m2m100")
    model, targets = loaded.model, loaded.family.targets
    folders = {}
    for name, (config, seed) in ADAPTERS.items():
        storage.add_adapter(model, config, targets, name)
        randomize_adapter(model, name, seed)
        folders[name] = storage.save_adapter(model, root / "adapters" / name, name)
        AdapterSet(model, targets).delete(name)
    storage.add_adapter(model, lora.LoraConfig(rank=4, alpha=8), targets, "peft")
    randomize_adapter(model, "peft", 6)
    folders["peft"] = export_lora_to_peft(model, root / "adapters" / "peft", "peft")
    AdapterSet(model, targets).delete("peft")
    storage.add_adapter(model, lora.LoraConfig(rank=4, alpha=8), targets, "extra")  # for hot loading
    randomize_adapter(model, "extra", 7)
    storage.save_adapter(model, root / "adapters" / "extra", "extra")
    storage.save_adapter(model, root / "outside" / "evil", "extra")
    os.symlink(root / "outside" / "evil", root / "adapters" / "link")

    config = {
        "model": "tiny:m2m100",
        "dtype": "float32",  # the references are float32 numbers; the host's default may be bfloat16
        "adapters": [{"name": n, "path": f"adapters/{n}"} for n in [*ADAPTERS, "peft"]],
        "adapter_roots": ["adapters"],
        "max_loaded": 4,
        "pairs": [{"source": "de", "target": "en"}],
        "api_keys": [
            {"tenant": "acme", "key": "key-acme-123", "adapters": ["lora1"], "base": False},
            {"tenant": "beta", "key": "key-beta-456", "adapters": ["lora2", "houlsby"]},
            {"tenant": "all", "key": "key-all-7890", "adapters": ["*"]},
        ],
        "admin_key": "key-admin-000",
        "limits": {"max_texts": 8, "max_chars": 200, "max_source_tokens": 40, "max_request_bytes": 20000, "max_queue": 64},
        "batching": {"max_batch_sentences": 16, "max_wait_ms": 40, "max_length_factor": FACTOR},
    }
    (root / "serve.yaml").write_text(yaml.safe_dump(config))
    server = ServerProcess(root / "serve.yaml").launch()  # loads while the references are computed
    references = {}
    ref, codec = _reference_model({**folders, "extra": root / "adapters" / "extra"})
    for name in [*ADAPTERS, "peft", "extra", None]:
        base.set_active_adapters(ref.model, [name] if name else [])  # the plain path: no routing
        for beams in (1, 3):
            generation = GenerationConfig(num_beams=beams, max_length_factor=FACTOR)
            references[name, beams] = [translate(ref.model, codec, [t], generation)[0] for t in TEXTS]  # each alone
    server.wait()
    try:
        yield {"url": server.url, "root": root, "references": references, "server": server}
    finally:
        server.stop()


async def _post_all(url: str, requests: list[tuple[str, dict]], headers: dict) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post(path, json=body, headers=headers) for path, body in requests))


@pytest.mark.parametrize("beams", [1, 3])
def test_mixed_adapter_batch_equals_per_sentence_translate(served, beams):
    names = [*ADAPTERS, "peft", None]
    requests = []
    for i, name in enumerate(names * 2):  # twice: more requests than max_loaded adapters -> LRU at work
        texts = [TEXTS[(i + k) % len(TEXTS)] for k in range(1 + i % 3)]
        requests.append((name, texts, ("/v1/translate", {"texts": texts, "adapter": name, "num_beams": beams})))
    responses = asyncio.run(_post_all(served["url"], [r for *_, r in requests], ALL))
    for (name, texts, _), response in zip(requests, responses):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["adapter"] == name
        expected = [served["references"][name, beams][TEXTS.index(t)] for t in texts]
        assert body["translations"] == expected, name
    # the adapters really differ from the base and from each other
    outs = {n: tuple(served["references"][n, beams]) for n in names}
    assert len(set(outs.values())) == len(names)
    metrics = httpx.get(served["url"] + "/metrics").text
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    buckets = {s.labels["le"]: s.value for s in families["mtadapt_batch_requests"].samples if s.name.endswith("_bucket")}
    assert buckets["+Inf"] > buckets["1.0"], "no batch held two requests"  # cross-request batching happened


def test_libretranslatepy_client_unchanged(served):
    from libretranslatepy import LibreTranslateAPI

    client = LibreTranslateAPI(served["url"], api_key="key-all-7890")
    assert client.translate(TEXTS[0], "de", "en") == served["references"][None, 1][0]
    assert client.languages() == [{"code": "de", "name": "German", "targets": ["en"]}]
    with pytest.raises(urllib.error.HTTPError) as err:
        LibreTranslateAPI(served["url"], api_key="wrong-key-000").translate(TEXTS[0], "de", "en")
    assert err.value.code == 403 and "api_key" in json.loads(err.value.read())["error"]
    # LibreTranslate's JSON body: q a list -> translatedText a list; plus mtadapt's adapter field
    r = httpx.post(served["url"] + "/translate", json={"q": TEXTS[:2], "source": "de", "target": "en", "adapter": "lora2",
                                                        "format": "text", "api_key": "key-all-7890"})
    assert r.json() == {"translatedText": served["references"]["lora2", 1][:2]}


def test_separators_stay_in_one_segment(served):
    texts = ["Hallo\u2028Welt", "das\x0cHaus", "ein\u2029Hund\nheute"]
    r = httpx.post(served["url"] + "/translate", json={"q": texts, "source": "de", "target": "en"}, headers=ALL)
    assert r.status_code == 200
    ref, codec = _reference_model()
    generation = GenerationConfig(max_length_factor=FACTOR)
    assert r.json()["translatedText"] == [translate(ref.model, codec, [t], generation)[0] for t in texts]
    r = httpx.post(served["url"] + "/translate", data={"q": texts[0], "source": "de", "target": "en"}, headers=ALL)
    assert isinstance(r.json()["translatedText"], str)


BAD_REQUESTS = [  # (path, kwargs, status, field)
    ("/translate", {"content": b'{"q": "x", "source": ', "headers": {"content-type": "application/json"}}, 400, "body"),
    ("/translate", {"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400, "body"),
    ("/translate", {"content": b"q=x", "headers": {"content-type": "text/plain"}}, 400, "body"),
    ("/translate", {"json": {"q": 5, "source": "de", "target": "en"}}, 400, "q"),
    ("/translate", {"json": {"q": ["a", 3], "source": "de", "target": "en"}}, 400, "q"),
    ("/translate", {"json": {"source": "de", "target": "en"}}, 400, "q"),
    ("/translate", {"json": {"q": "x", "target": "en"}}, 400, "source"),
    ("/translate", {"json": {"q": "x", "source": "fr", "target": "en"}}, 400, "source"),
    ("/translate", {"json": {"q": "x", "source": "de", "target": "xx"}}, 400, "target"),
    ("/translate", {"json": {"q": "x", "source": "de", "target": "en", "adapter": "nope"}}, 400, "adapter"),
    ("/translate", {"json": {"q": [], "source": "de", "target": "en"}}, 400, "q"),
    ("/translate", {"json": {"q": "  ", "source": "de", "target": "en"}}, 400, "q"),
    ("/translate", {"json": {"q": ["ok", ""], "source": "de", "target": "en"}}, 400, "q"),
    ("/translate", {"json": {"q": "x" * 201, "source": "de", "target": "en"}}, 400, "q"),
    ("/translate", {"json": {"q": ["x"] * 9, "source": "de", "target": "en"}}, 400, "q"),
    ("/translate", {"json": {"q": "wort " * 39, "source": "de", "target": "en"}}, 400, "q"),  # tokens > 40
    ("/translate", {"json": {"q": "x", "source": "de", "target": "en", "format": "xml"}}, 400, "format"),
    ("/translate", {"content": b"x" * 20001, "headers": {"content-type": "application/json"}}, 413, "body"),
    ("/translate", {"content": b'{"q": "\xff"}', "headers": {"content-type": "application/json"}}, 400, "body"),
    ("/v1/translate", {"json": {"texts": "Hallo"}}, 400, "texts"),
    ("/v1/translate", {"json": {"texts": ["Hallo"], "num_beams": 0}}, 400, "num_beams"),
    ("/v1/translate", {"json": {"texts": ["Hallo"], "num_beams": 99}}, 400, "num_beams"),
    ("/v1/translate", {"json": {"texts": ["Hallo"], "num_beams": "3"}}, 400, "num_beams"),
    ("/v1/translate", {"json": {"texts": ["Hallo"], "max_length_factor": -1}}, 400, "max_length_factor"),
    ("/v1/translate", {"json": {"texts": ["Hallo"], "beams": 2}}, 400, "beams"),
    ("/v1/translate", {"json": {"texts": ["Hallo"], "tgt_lang": "fr"}}, 400, "tgt_lang"),
    ("/v1/translate", {"json": {"texts": ["Hallo"], "adapter": 7}}, 400, "adapter"),
]


def test_every_bad_request_gets_its_4xx_naming_the_field(served):
    with httpx.Client(base_url=served["url"], timeout=30) as client:
        for path, kwargs, status, field in BAD_REQUESTS:
            kwargs = {**kwargs, "headers": {**ALL, **kwargs.get("headers", {})}}
            r = client.post(path, **kwargs)
            assert r.status_code == status, (path, kwargs, r.text)
            body = r.json()
            assert body["field"] == field and body["error"].startswith(field), (path, kwargs, body)
        assert client.get("/nowhere").status_code == 404
        assert client.put("/translate").status_code == 405
        assert client.get("/health").json()["status"] == "ok"  # still up
        assert client.get("/ready").status_code == 200


def test_tenant_keys_are_isolated(served):
    url = served["url"] + "/translate"

    def post(key, adapter=None, header=False):
        body = {"q": TEXTS[0], "source": "de", "target": "en", **({"adapter": adapter} if adapter else {})}
        if header:
            return httpx.post(url, json=body, headers={"X-API-Key": key})
        return httpx.post(url, json={**body, "api_key": key})

    assert post("key-acme-123", "lora1").json()["translatedText"] == served["references"]["lora1", 1][0]
    for key, adapter in [("key-acme-123", "lora2"), ("key-acme-123", "nonexistent"), ("key-acme-123", None),
                         ("key-beta-456", "lora1"), ("key-beta-456", "prefix")]:
        r = post(key, adapter, header=True)
        assert r.status_code == 403 and r.json()["field"] == "adapter", (key, adapter, r.text)
    assert post("key-beta-456", "houlsby").status_code == 200
    assert httpx.post(url, json={"q": "x", "source": "de", "target": "en"}).status_code == 403  # no key
    assert post("key-unknown-1").status_code == 403
    listed = httpx.get(served["url"] + "/v1/adapters", headers={"X-API-Key": "key-acme-123"}).json()["adapters"]
    assert [a["name"] for a in listed] == ["lora1"]
    r = httpx.post(served["url"] + "/v1/adapters", json={"name": "a", "path": "extra"}, headers={"X-API-Key": "key-all-7890"})
    assert r.status_code == 403
    assert httpx.delete(served["url"] + "/v1/adapters/lora1", headers={"X-API-Key": "key-acme-123"}).status_code == 403


def test_adapter_paths_stay_under_roots(served):
    root = served["root"]
    for path in ["../outside/evil", str(root / "outside" / "evil"), "link", "adapters/../../outside/evil", str(root / "adapters" / "link")]:
        r = httpx.post(served["url"] + "/v1/adapters", json={"name": "evil", "path": path}, headers=ADMIN)
        assert r.status_code == 403 and r.json()["field"] == "path", (path, r.text)
    r = httpx.post(served["url"] + "/v1/adapters", json={"name": "evil", "path": "missing"}, headers=ADMIN)
    assert r.status_code == 400 and r.json()["field"] == "path"
    names = [a["name"] for a in httpx.get(served["url"] + "/v1/adapters", headers=ADMIN).json()["adapters"]]
    assert "evil" not in names


def test_hot_load_and_unload_under_load_and_lru_reloads(served):
    url, refs = served["url"], served["references"]
    stop, failures, served_count = threading.Event(), [], [0]
    # while `paused`, each generator finishes its request in flight and then sends none (`idle`)
    paused, idle = threading.Event(), {a: threading.Event() for a in ("lora1", "houlsby", "prompt")}

    def load_generator(adapter):
        with httpx.Client(base_url=url, timeout=60, headers=ALL) as client:
            while not stop.is_set():
                if paused.is_set():
                    idle[adapter].set()
                    time.sleep(0.005)
                    continue
                idle[adapter].clear()
                r = client.post("/v1/translate", json={"texts": TEXTS[:2], "adapter": adapter})
                if r.status_code != 200 or r.json()["translations"] != refs[adapter, 1][:2]:
                    failures.append((adapter, r.status_code, r.text))
                served_count[0] += 1

    threads = [threading.Thread(target=load_generator, args=(a,)) for a in idle]
    for t in threads:
        t.start()
    try:
        r = httpx.post(url + "/v1/adapters", json={"name": "extra", "path": "extra"}, headers=ADMIN, timeout=60)
        assert r.status_code == 201, r.text
        assert r.json()["method"] == "lora" and r.json()["bytes"] > 0 and r.json()["trainable_parameters"] > 0
        r = httpx.post(url + "/v1/translate", json={"texts": TEXTS, "adapter": "extra"}, headers=ALL, timeout=60)
        assert r.json()["translations"] == refs["extra", 1]
        assert httpx.post(url + "/v1/adapters", json={"name": "extra", "path": "extra"}, headers=ADMIN).status_code == 409
        # unload while a burst of requests for it is queued: every queued one is still served.
        # The DELETE goes out once the server holds the whole burst (queued or answered) and
        # some of it is unanswered; the generators pause meanwhile, so the queue holds only the
        # burst, and go on before the DELETE, so the unload still runs under load.
        paused.set()
        for event in idle.values():
            assert event.wait(60), "a load generator did not pause"
        assert httpx.get(url + "/ready").json()["queue_depth"] == 0

        async def burst_then_delete():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                bursts = []
                for _ in range(5):  # a burst answered in full before the DELETE could go out: another
                    tasks = [asyncio.ensure_future(client.post("/v1/translate", json={"texts": [t], "adapter": "extra"},
                                                               headers=ALL)) for t in TEXTS]
                    bursts.append(tasks)
                    deadline = time.monotonic() + 60
                    while True:
                        answered = sum(t.done() for t in tasks)  # read before the queue: none counted twice
                        queued = (await client.get("/ready")).json()["queue_depth"]  # a sentence per request
                        if answered + queued >= len(tasks):
                            break
                        assert time.monotonic() < deadline, (answered, queued)
                        await asyncio.sleep(0.002)
                    if answered < len(tasks):
                        break
                    await asyncio.gather(*tasks)
                paused.clear()
                deleted = await client.delete("/v1/adapters/extra", headers=ADMIN)
                return len(tasks) - answered, deleted, [await asyncio.gather(*burst) for burst in bursts]

        unanswered, deleted, bursts = asyncio.run(burst_then_delete())
        assert deleted.status_code == 200, deleted.text
        assert unanswered > 0, "every burst was answered before its DELETE could go out"
        for answers in bursts:
            for t, a in zip(TEXTS, answers):
                assert a.status_code == 200 and a.json()["translations"] == [refs["extra", 1][TEXTS.index(t)]], a.text
        r = httpx.post(url + "/v1/translate", json={"texts": TEXTS[:1], "adapter": "extra"}, headers=ALL)
        assert r.status_code == 400 and r.json()["field"] == "adapter"
        assert httpx.delete(url + "/v1/adapters/extra", headers=ADMIN).status_code == 404
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:3]
    assert served_count[0] >= 3
    # LRU: 5 configured adapters + extra, max_loaded 4 -> evictions happened, and an evicted one reloads
    listing = httpx.get(url + "/v1/adapters", headers=ADMIN).json()["adapters"]
    states = {a["name"]: a["state"] for a in listing}
    assert sum(s == "loaded" for s in states.values()) <= 4 and "evicted" in states.values()
    evicted = next(n for n, s in states.items() if s == "evicted")
    r = httpx.post(url + "/v1/translate", json={"texts": TEXTS, "adapter": evicted, "num_beams": 3}, headers=ALL)
    assert r.json()["translations"] == refs[evicted, 3]
    after = {a["name"]: a for a in httpx.get(url + "/v1/adapters", headers=ADMIN).json()["adapters"]}
    assert after[evicted]["state"] == "loaded" and after[evicted]["requests_served"] >= 1


def test_metrics_parse_and_openapi(served):
    from prometheus_client.parser import text_string_to_metric_families

    httpx.post(served["url"] + "/translate", json={"q": "x", "source": "de", "target": "zz"}, headers=ALL)
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(served["url"] + "/metrics").text)}
    codes = {(s.labels["route"], s.labels["code"]) for s in families["mtadapt_requests"].samples if s.name == "mtadapt_requests_total"}
    assert ("/translate", "400") in codes and ("/v1/translate", "200") in codes
    assert {"mtadapt_queue_depth", "mtadapt_batch_sentences", "mtadapt_request_seconds", "mtadapt_sentences",
            "mtadapt_tokens", "mtadapt_adapters_loaded", "mtadapt_adapter_evictions"} <= set(families)
    sentences = {s.labels["adapter"]: s.value for s in families["mtadapt_sentences"].samples if s.name.endswith("_total")}
    assert sentences["lora1"] > 0 and sentences["__base__"] > 0
    spec = httpx.get(served["url"] + "/openapi.json").json()
    assert {"/translate", "/languages", "/v1/translate", "/v1/adapters", "/health", "/ready", "/metrics"} <= set(spec["paths"])
    body = spec["paths"]["/translate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"q", "source", "target", "adapter", "api_key"} <= set(body["properties"])


def test_full_queue_answers_429_with_retry_after(served):
    """64 queued sentences at most: 24 concurrent requests of 8 texts overflow it."""
    texts = [TEXTS[i % len(TEXTS)] for i in range(8)]
    responses = asyncio.run(_post_all(served["url"], [("/v1/translate", {"texts": texts})] * 24, ALL))
    codes = [r.status_code for r in responses]
    assert 429 in codes and 200 in codes and set(codes) <= {200, 429}, codes
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["Retry-After"] == "1" and "queue" in busy.json()["error"]
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.json()["translations"] == [served["references"][None, 1][TEXTS.index(t)] for t in texts]
    assert httpx.get(served["url"] + "/ready").status_code == 200  # drained again


def test_restarted_server_serves_after_sigkill(served):  # last: restarts the module's server
    server = served["server"]
    server.kill()
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/health", timeout=2)
    server.start()  # same config, same port
    r = httpx.post(server.url + "/translate", json={"q": TEXTS[1], "source": "de", "target": "en", "adapter": "lora1"},
                   headers=ALL)
    assert r.json() == {"translatedText": served["references"]["lora1", 1][1]}


def test_port_0_prints_the_real_port_and_head_answers_like_get(tmp_path):
    """`--port 0` printed "http://127.0.0.1:0"; the real port is printed now, and uvicorn
    answers HEAD /health without a body, JSON too deep or not text with 400s."""
    import re
    import subprocess
    import sys
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen([sys.executable, "-m", "mtadapt.cli", "serve", "--model", "tiny:m2m100", "--src-lang", "de",
                                "--tgt-lang", "en", "--dtype", "float32", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            match = re.search(r"; http://127\.0\.0\.1:(\d+)$", line.strip())
            if match:
                break
        assert match, "".join(lines)
        url = f"http://127.0.0.1:{match.group(1)}"
        assert int(match.group(1)) > 0
        deadline = time.monotonic() + 60
        while True:
            try:
                get = httpx.get(url + "/health", timeout=1.0)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.2)
        head = httpx.head(url + "/health")
        assert head.status_code == get.status_code == 200 and head.content == b""
        assert httpx.options(url + "/ready").headers["allow"] == "GET, HEAD, OPTIONS"
        deep = b'{"source": "de", "target": "en", "q": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        r = httpx.post(url + "/translate", content=deep, headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["field"]) == (400, "q")
        r = httpx.post(url + "/translate", content=b'{"source": "de", "target": "en", "q": "\\ud800"}',
                       headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["field"]) == (400, "q")
    finally:
        process.terminate()
        process.wait(15)
