"""Serve parts without a server: batch formation and retries of the worker, the serve config's
validation (every problem with file:line), adapter paths under roots, keys."""

from __future__ import annotations

import os
import threading
import time

import pytest

from mtadapt.config import ConfigError
from mtadapt.serve.config import load_serve_config
from mtadapt.serve.worker import Job
from mtadapt.serve.security import AccessError, KeyRing, PathError, adapter_path_under_roots
from mtadapt.serve.worker import BatchWorker, DeadlineExceeded, QueueFull


def job(text_ids, adapter=None, group="routable", beams=1, deadline_s=30.0):
    return Job([list(t) for t in text_ids], adapter, ("de", "en"), beams, 2.0, time.monotonic() + deadline_s, group)


class Recorder:
    """A fake `Engine.generate`: output = input reversed; remembers each batch; can fail."""

    def __init__(self, poison: int | None = None, gate: threading.Event | None = None):
        self.batches: list[list[Job]] = []
        self.poison, self.gate = poison, gate

    def __call__(self, jobs):
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(jobs))
        if self.poison is not None and any(self.poison in s for j in jobs for s in j.src_ids):
            raise RuntimeError("poisoned batch")
        return [[list(reversed(s)) for s in j.src_ids] for j in jobs]


def start(run, **kwargs):
    settings = dict(max_queue=100, max_batch_sentences=8, max_batch_tokens=1000, max_wait_s=0.05)
    settings.update(kwargs)
    worker = BatchWorker(run, **settings)
    worker.start()
    return worker


def test_jobs_for_different_routable_adapters_share_a_batch_and_others_do_not():
    gate = threading.Event()
    run = Recorder(gate=gate)
    worker = start(run, max_adapters=2)
    blocker = worker.submit(job([[9]]))  # holds the worker while the rest queue up
    time.sleep(0.1)
    futures = [
        worker.submit(job([[1, 2]], "lora-a")), worker.submit(job([[3]], "lora-b")),
        worker.submit(job([[4]], "prefix-p", group="prefix-p")), worker.submit(job([[5]], "lora-c")),
        worker.submit(job([[6]], "lora-a", beams=3)), worker.submit(job([[7]], "prefix-p", group="prefix-p")),
    ]
    gate.set()
    assert blocker.result(10) == [[9]]
    assert [f.result(10) for f in futures] == [[[2, 1]], [[3]], [[4]], [[5]], [[6]], [[7]]]
    worker.stop()
    batches = [[(j.adapter, j.num_beams) for j in b] for b in run.batches[1:]]
    # lora-a + lora-b together (lora-c would be a third adapter: max_adapters=2); the prefix
    # adapter's jobs together and alone; beam 3 apart from greedy
    assert batches == [[("lora-a", 1), ("lora-b", 1)], [("prefix-p", 1), ("prefix-p", 1)], [("lora-c", 1)], [("lora-a", 3)]]


def test_batch_respects_sentence_and_token_budgets():
    gate = threading.Event()
    run = Recorder(gate=gate)
    worker = start(run, max_batch_sentences=3, max_batch_tokens=12)
    worker.submit(job([[0]]))
    time.sleep(0.1)
    futures = [worker.submit(job([[1] * 4, [2] * 4])), worker.submit(job([[3] * 4])), worker.submit(job([[4] * 5])),
               worker.submit(job([[5]] * 2))]
    gate.set()
    for f in futures:
        f.result(10)
    worker.stop()
    sizes = [[len(j.src_ids) for j in b] for b in run.batches[1:]]
    # 2+1 sentences of width 4 = 12 tokens; the 5-wide one alone would make 3x5 > 12
    assert sizes == [[2, 1], [1, 2]] or sizes == [[2, 1], [1], [2]]
    assert all(sum(len(j.src_ids) for j in b) <= 3 for b in run.batches)


def test_a_failed_batch_is_retried_one_job_at_a_time():
    gate = threading.Event()
    run = Recorder(poison=666, gate=gate)
    worker = start(run)
    worker.submit(job([[0]]))
    time.sleep(0.1)
    good1, bad, good2 = worker.submit(job([[1, 2]])), worker.submit(job([[666]])), worker.submit(job([[3]]))
    gate.set()
    assert good1.result(10) == [[2, 1]] and good2.result(10) == [[3]]
    with pytest.raises(RuntimeError, match="poisoned"):
        bad.result(10)
    # the worker lives on
    assert worker.submit(job([[4, 5]])).result(10) == [[5, 4]]
    worker.stop()
    assert [len(b) for b in run.batches[1:5]] == [3, 1, 1, 1]


def test_full_queue_and_deadlines():
    gate = threading.Event()
    run = Recorder(gate=gate)
    worker = start(run, max_queue=3)
    worker.submit(job([[0]]))
    time.sleep(0.1)  # the worker holds job 0; the queue is empty again
    ok = worker.submit(job([[1], [2]]))
    with pytest.raises(QueueFull):
        worker.submit(job([[3], [4]]))
    late = worker.submit(job([[5]], deadline_s=0.05))
    time.sleep(0.2)
    gate.set()
    assert ok.result(10) == [[1], [2]]
    with pytest.raises(DeadlineExceeded):
        late.result(10)
    worker.stop()


def test_control_actions_run_between_the_jobs_queued_before_and_after():
    gate = threading.Event()
    run = Recorder(gate=gate)
    worker = start(run)
    order = []
    worker.submit(job([[0]]))
    time.sleep(0.1)
    before = worker.submit(job([[1]], "a"))
    action = worker.control(lambda: order.append(("action", len(run.batches))) or "done")
    after = worker.submit(job([[2]], "a"))
    gate.set()
    assert before.result(10) == [[1]] and after.result(10) == [[2]] and action.result(10) == "done"
    worker.stop()
    assert order == [("action", 2)]  # after job 0 and `before`, before `after`
    assert [[j.src_ids for j in b] for b in run.batches] == [[[[0]]], [[[1]]], [[[2]]]]


def test_serve_config_reports_every_problem_with_its_line(tmp_path):
    (tmp_path / "ad").mkdir()
    path = tmp_path / "serve.yaml"
    path.write_text(
        "model: tiny:m2m100\n"
        "adapters:\n"
        "  - {name: ui, path: ad}\n"
        "  - {name: ui, path: missing}\n"
        "pairs:\n"
        "  - {source: de, target: en, adapter: bibel}\n"
        "limits:\n"
        "  max_texts: 0\n"
        "  max_chars: many\n"
        "batching: {max_wait: 3}\n"
        "api_keys:\n"
        "  - {tenant: a, key: short, adapters: [ui]}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_serve_config(path)
    message = str(err.value)
    assert f"{path}:9: limits.max_chars: expected int, got 'many'" in message
    assert f"{path}:10: batching.max_wait: unknown key; did you mean 'max_wait_ms'?" in message
    # type errors first; once fixed, the cross-field problems are all reported together
    path.write_text(path.read_text().replace("max_chars: many", "max_chars: 100").replace("max_wait", "max_wait_ms"))
    with pytest.raises(ConfigError) as err:
        load_serve_config(path)
    message = str(err.value)
    for expected in ["adapters[1].name: 'ui' repeats adapters[0]", "adapters[1].path:", "is not a folder",
                     "pairs[0].adapter: unknown adapter 'bibel'; configured: ui", "limits.max_texts: must be > 0",
                     "api_keys[0].key: give a key of at least 8 characters"]:
        assert expected in message, (expected, message)
    assert f"{path}:8: limits.max_texts" in message
    ok = load_serve_config(None, {"model": "tiny:m2m100", "adapters": [{"name": "ui", "path": str(tmp_path / "ad")}]})
    assert ok.adapters[0].name == "ui" and ok.host == "127.0.0.1"


def test_adapter_paths_under_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "good").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, root / "escape")
    os.symlink(root / "good", root / "alias")
    assert adapter_path_under_roots("good", [str(root)]) == (root / "good").resolve()
    assert adapter_path_under_roots(str(root / "alias"), [str(root)]) == (root / "good").resolve()  # symlink inside: fine
    for bad, status in [("../outside", 403), ("good/../../outside", 403), (str(outside), 403), ("escape", 403),
                        ("nothere", 400), ("", 400)]:
        with pytest.raises(PathError) as err:
            adapter_path_under_roots(bad, [str(root)])
        assert err.value.status == status and str(err.value).startswith("path:"), bad
    with pytest.raises(PathError, match="disabled"):
        adapter_path_under_roots("good", [])


def test_keys():
    config = load_serve_config(None, {"model": "m", "api_keys": [{"tenant": "a", "key": "key-a-123456", "adapters": []}],
                                      "admin_key": "admin-key-123"})
    ring = KeyRing(config)
    assert ring.caller("key-a-123456").tenant == "a" and not ring.caller("key-a-123456").may_use("x")
    assert ring.caller("admin-key-123").admin
    for key in [None, "", "key-a-12345", "admin-key-12"]:
        with pytest.raises(AccessError):
            ring.caller(key)
    with pytest.raises(AccessError):
        ring.admin("key-a-123456")
    open_ring = KeyRing(load_serve_config(None, {"model": "m"}))
    assert open_ring.caller(None).may_use("anything")
    with pytest.raises(AccessError, match="disabled"):
        open_ring.admin("whatever")


# ------------------------------------------------------------ the app in process (no socket)


@pytest.fixture(scope="module")
def app_client():
    """The real app over the tiny m2m100 engine (its real tokenizer), driven in process."""
    from starlette.testclient import TestClient

    from mtadapt.serve.app import create_app
    from mtadapt.serve.config import serve_config_from_dict
    from mtadapt.serve.engine import load_engine

    config = serve_config_from_dict({"model": "tiny:m2m100", "dtype": "float32", "pairs": [{"source": "de", "target": "en"}],
                                     "cors_origins": ["https://app.example.org"]})
    engine = load_engine(config)
    with TestClient(create_app(config, engine), raise_server_exceptions=False) as client:
        yield client, engine


def _requests_counted(client) -> dict[tuple[str, str], float]:
    import re

    counts = {}
    for line in client.get("/metrics").text.splitlines():
        m = re.fullmatch(r'mtadapt_requests_total\{code="(\d+)",route="([^"]+)"\} ([0-9.]+)', line)
        if m:
            counts[(m.group(2), m.group(1))] = float(m.group(3))
    return counts


def test_json_too_deep_or_not_text_is_a_400_naming_the_field(app_client):
    """Issue 29 item 12: `q` nested 100,000 lists deep was a RecursionError and a lone surrogate
    (valid JSON) a TypeError in the tokenizer: both 500s."""
    client, _ = app_client
    deep = '{"source": "de", "target": "en", "q": ' + "[" * 100_000 + "]" * 100_000 + "}"
    for path, body in (("/translate", deep), ("/v1/translate", deep.replace('"q"', '"texts"'))):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        field = "q" if path == "/translate" else "texts"
        assert (r.status_code, r.json()) == (400, {"error": f"{field}: nested deeper than 32 levels of JSON arrays/objects", "field": field})
    for q, where in (('"\\ud800"', "q"), ('["fine", "a\\udfffb"]', "q[1]")):
        r = client.post("/translate", content='{"source": "de", "target": "en", "q": %s}' % q, headers={"content-type": "application/json"})
        code = "DFFF" if "udfff" in q else "D800"
        assert r.status_code == 400 and r.json() == {"field": "q", "error": (
            f"q: a lone surrogate (U+{code}) at character {1 if where == 'q[1]' else 0} of {where} is not text; send valid Unicode (UTF-8)")}
    r = client.post("/v1/translate", content='{"texts": ["x"], "adapter": "\\ud83d"}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "adapter"
    assert client.post("/translate", json={"q": "ein \U0001F600 vogel", "source": "de", "target": "en"}).status_code == 200  # a pair is fine


def test_every_500_is_counted_in_metrics(app_client, monkeypatch):
    """A 500 (a bug) used to bypass the counting middleware: /metrics never showed one."""
    client, engine = app_client

    def broken(pair, texts):
        raise TypeError("argument 'input': 'str' object cannot be converted to 'PyString'")

    before = _requests_counted(client).get(("/translate", "500"), 0)
    monkeypatch.setattr(engine, "encode", broken)
    for _ in range(2):
        r = client.post("/translate", json={"q": "hallo", "source": "de", "target": "en"})
        assert (r.status_code, r.json()) == (500, {"error": "internal error: TypeError", "field": None})
    assert _requests_counted(client)[("/translate", "500")] == before + 2


def test_static_files_are_counted_under_their_mount(app_client):
    """The comparison page's files came through a Mount, which sets no route: they were
    counted as "unmatched" with every 404 for an unknown path."""
    client, _ = app_client
    before = _requests_counted(client)
    assert client.get("/static/page.js").status_code == 200 and client.get("/static/nope.js").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    after = _requests_counted(client)
    for key in (("/static", "200"), ("/static", "404"), ("unmatched", "404")):
        assert after.get(key, 0) == before.get(key, 0) + 1, (key, after)


def test_head_options_cors_and_compressed_bodies(app_client):
    client, _ = app_client
    for path in ("/health", "/ready"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == get.headers["content-length"]
    r = client.options("/health")
    assert (r.status_code, r.headers["allow"]) == (204, "GET, HEAD, OPTIONS")
    assert client.options("/translate").headers["allow"] == "OPTIONS, POST"
    assert client.options("/v1/adapters").headers["allow"] == "GET, OPTIONS, POST"
    assert client.options("/nowhere").status_code == 404
    assert client.get("/nowhere").status_code == 404 and client.put("/translate").status_code == 405  # as before
    r = client.put("/v1/adapters")  # a path of two routes (GET, POST): a 405 names the methods of both
    assert (r.status_code, r.headers["allow"]) == (405, "GET, OPTIONS, POST")
    preflight = {"origin": "https://app.example.org", "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type, x-api-key"}
    r = client.options("/translate", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.org"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert client.options("/translate", headers={**preflight, "origin": "https://other.example"}).status_code == 400
    r = client.post("/translate", json={"q": "hallo", "source": "de", "target": "en"}, headers={"origin": "https://app.example.org"})
    assert r.headers["access-control-allow-origin"] == "https://app.example.org"
    import gzip

    r = client.post("/translate", content=gzip.compress(b'{"q": "hallo", "source": "de", "target": "en"}'),
                    headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert (r.status_code, r.json()) == (415, {"error": "body: content encoding 'gzip' not supported; send the body uncompressed",
                                               "field": "body"})


def test_cors_origins_are_validated():
    from mtadapt.serve.config import serve_config_from_dict

    with pytest.raises(ConfigError, match=r"cors_origins\[1\]: 'https://app.example.org/' is not an origin"):
        serve_config_from_dict({"model": "tiny:m2m100", "cors_origins": ["*", "https://app.example.org/"]})


def test_taken_port_or_unknown_host_fails_before_the_model_loads(monkeypatch, capsys):
    import socket

    from mtadapt.cli import main
    from mtadapt.serve import engine

    def must_not_load(config):
        raise AssertionError("the model was loaded before the port was checked")

    monkeypatch.setattr(engine, "load_engine", must_not_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", "tiny:m2m100", "--port", str(port)]) == 2
        assert capsys.readouterr().err == (f"error: --port {port}: 127.0.0.1:{port} is already in use; "
                                           "choose another port (--port 0: any free one)\n")
    assert main(["serve", "--model", "tiny:m2m100", "--host", "no-such-host.invalid"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --host 'no-such-host.invalid': cannot be resolved (") and err.count("\n") == 1


def test_blank_texts_are_the_same_for_the_schema_and_the_server():
    """The schema's `pattern` (ECMA-262 regex, as schemathesis and clients read it) and the
    server's blank test agree on the characters the two regex engines class differently."""
    from mtadapt.serve.schemas import NOT_BLANK, is_blank

    ecma_space = set("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {chr(c) for c in range(0x2000, 0x200B)}
    python_space = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    for c in sorted(ecma_space | python_space | {"\u200b", "a", "\x00"}):
        assert is_blank(c) == (c in ecma_space | python_space), repr(c)
    assert NOT_BLANK.startswith("[^\\s") and not is_blank(" x ")
