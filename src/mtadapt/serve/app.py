"""The HTTP app (FastAPI on uvicorn): LibreTranslate-compatible and native routes.

    POST /translate             LibreTranslate: q (string or list), source (or "auto"), target,
                                format, alternatives, api_key; + `adapter`. JSON, form, multipart
                                or query string. {"translatedText", "detectedLanguage"?,
                                "alternatives"?}
    POST /detect                LibreTranslate: q -> [{"confidence", "language"}], best first
    POST /translate_file        LibreTranslate: multipart file (.txt .html .po .pot), source,
                                target, api_key; + adapter -> {"translatedFileUrl": ...}
    GET  /download_file/{id}/{name}  that file, for files.expiry_s (an attachment)
    GET  /languages             LibreTranslate: [{"code", "name", "targets"}]
    GET  /frontend/settings     LibreTranslate: charLimit, apiKeys, keyRequired, language defaults ...
    POST /v1/translate          texts, adapter, src_lang, tgt_lang, num_beams, max_length_factor
                                -> translations, adapter, timings
    GET  /v1/adapters           the adapters this key may use (name, method, parameters,
                                bytes, base fingerprint, loaded/evicted, requests served),
                                and whether it may use the base model (`base_allowed`)
    POST /v1/adapters           admin: register + load a folder under an adapter root
    DELETE /v1/adapters/{name}  admin: unload and forget
    GET  /health, /ready        liveness; readiness (503 while the queue is full or the
                                worker is down); HEAD too
    GET  /metrics               Prometheus text format (every answer counted, 500s included)
    GET  /openapi.json          the schema, with this server's languages, adapters and limits
    GET  /                      the page comparing adapters side by side (files under static/)
    OPTIONS any route           204 with `Allow`; a CORS preflight when `cors_origins` is set

Translations carry `warnings`: every placeholder (`%s`, `{name}`, `&amp;`, `<b>`) that did not
come through exactly once, and HTML whose inline markup the model lost (`serve.formats`;
`protect_placeholders`, on by default for every format).

A handler validates, tokenizes (the tokenizer lives on the event-loop thread), queues a job
and awaits it; the generation worker thread does everything with the model.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount

from mtadapt.data.placeholders import MASK_STYLES
from mtadapt.errors import ConfigError
from mtadapt.serve import formats, schemas
from mtadapt.serve.files import CONTENT_TYPES, FileStore, translated_name, uploaded_file
from mtadapt.serve.config import ADAPTER_NAME, BASE_ADAPTER, ServeConfig
from mtadapt.serve.engine import Engine
from mtadapt.serve.languages import DetectionUnavailable, LanguageDetector, language_name
from mtadapt.serve.metrics import Metrics
from mtadapt.serve.openapi import served_openapi
from mtadapt.serve.params import read_params
from mtadapt.serve.registry import AdapterError
from mtadapt.serve.translators import ComputeTypeError
from mtadapt.serve.schemas import ApiError
from mtadapt.serve.security import AccessError, Caller, KeyRing, PathError, adapter_path_under_roots, key_from_headers
from mtadapt.serve.worker import BatchWorker, DeadlineExceeded, Job, QueueFull, WorkerStopped

log = logging.getLogger("mtadapt.serve")


FRONTEND_DEBOUNCE_MS = 500
"""`/frontend/settings`' frontendTimeout: how long a page waits after the last keystroke before it
translates (LibreTranslate's default)."""

STATIC = Path(__file__).parent / "static"  # the page at `/`: index.html, page.js, diff.js, page.css


def _json_schema(model: type) -> dict:
    return {"content": {"application/json": {"schema": model.model_json_schema()}}, "required": True}


def _form_or_json_schema(model: type) -> dict:
    """A LibreTranslate body: JSON or a form (the query string may carry the same fields: `read_params`)."""
    schema = model.model_json_schema()
    return {"content": {t: {"schema": schema} for t in ("application/json", "application/x-www-form-urlencoded",
                                                         "multipart/form-data")}, "required": True}


class Server:
    """The app's state: config, engine, worker, keys, metrics."""

    def __init__(self, config: ServeConfig, engine: Engine) -> None:
        self.config, self.engine = config, engine
        self.keys = KeyRing(config)
        self.metrics = Metrics()
        bat, lim = config.batching, config.limits
        self.worker = BatchWorker(engine.generate, lim.max_queue, bat.max_batch_sentences, bat.max_batch_tokens,
                                  bat.max_wait_ms / 1000, config.max_loaded, self.metrics)
        self.removing: set[str] = set()  # adapters being deleted: unknown to new requests
        self.targets: dict[str, list[str]] = {}  # served source -> its targets
        for source, target in engine.pairs:
            self.targets.setdefault(source, []).append(target)
        self.targets = {s: sorted(t) for s, t in sorted(self.targets.items())}
        self.detector = LanguageDetector(list(self.targets))
        self.file_formats: list[str] = []  # extensions /translate_file accepts (set where that route is added)
        self._styles: dict[tuple[str, str], list] = {}  # pair -> mask styles its tokenizer keeps (formats.pair_styles)
        self.files = FileStore(config.files.folder, config.files.expiry_s)  # translated files awaiting download
        self._sync_adapter_metrics()

    def _sync_adapter_metrics(self) -> None:
        reg = self.engine.registry
        self.metrics.adapters(len(reg.loaded_names()), reg.loads, reg.evictions)
        self.metrics.engines(self.engine.engines())

    # ---- request resolution ----------------------------------------------------------------

    def caller(self, request: Request, body_key: str | None = None) -> Caller:
        key = body_key or key_from_headers({k.lower(): v for k, v in request.headers.items()}) or request.query_params.get("api_key")
        return self.keys.caller(key)

    def pair(self, source: str | None, target: str | None, source_field: str, target_field: str) -> tuple[str, str]:
        """The served direction a request names; (x, x) for a served language x: the text unchanged."""
        pairs = list(self.engine.pairs)
        sources = sorted({s for s, _ in pairs})
        if source is not None and source == target and source in sources and any(t == target for _, t in pairs):
            return source, target  # identity, as LibreTranslate (Argos) answers a same-language request
        if source in (None, "auto"):
            if len(sources) != 1:
                raise ApiError(400, source_field, f"{source_field}: give the source language; served: {', '.join(sources)}")
            source = sources[0]
        if source not in sources:
            raise ApiError(400, source_field, f"{source_field}: {source!r} is not a served source language; valid: {', '.join(sources)}")
        targets = sorted(t for s, t in pairs if s == source)
        if target is None and len(targets) == 1:
            target = targets[0]
        if target not in targets:
            raise ApiError(400, target_field, f"{target_field}: {target!r} is not a served target for {source}; valid: {', '.join(targets)}")
        return source, target

    def adapter(self, caller: Caller, name: str | None, pair: tuple[str, str]) -> str | None:
        """The adapter a request uses: its own, else the pair's default; None = base model."""
        if name is None:
            name = self.engine.pairs[pair].adapter if pair in self.engine.pairs else None  # identity: no model
        if name in (None, BASE_ADAPTER):
            if not caller.may_use(None):
                raise ApiError(403, "adapter", "adapter: this API key may not use the base model; name one of its adapters")
            return None
        if not caller.may_use(name):  # 403 whether or not it exists: no probing other tenants
            allowed = sorted(caller.adapters or [])
            raise ApiError(403, "adapter", f"adapter: {name!r} is not available to this API key; it may use: {', '.join(allowed) or 'none'}")
        if self.engine.registry.get(name) is None or name in self.removing:
            known = [r.name for r in self.engine.registry.records() if caller.may_use(r.name) and r.name not in self.removing]
            raise ApiError(400, "adapter", f"adapter: unknown adapter {name!r}; available: {', '.join(known) or 'none'} (or {BASE_ADAPTER})")
        return name

    async def translate(self, texts: list[str], field: str, pair: tuple[str, str], adapter: str | None,
                        num_beams: int, max_length_factor: float) -> tuple[list[str], Job]:
        """Tokenize, queue, await, decode. Raises ApiError for every outcome but success."""
        nbest, job = await self.translate_nbest(texts, field, pair, adapter, num_beams, max_length_factor)
        return [n[0] for n in nbest], job

    async def translate_nbest(self, texts: list[str], field: str, pair: tuple[str, str], adapter: str | None,
                              num_beams: int, max_length_factor: float, num_return: int = 1) -> tuple[list[list[str]], Job]:
        """`translate` with each text's `num_return` best translations (best first; the text
        itself, alone, for a same-language pair)."""
        lim = self.config.limits
        schemas.check_texts(texts, field, lim.max_texts, lim.max_chars)
        if pair[0] == pair[1]:
            now = time.monotonic()
            return [[t] for t in texts], Job([], adapter, pair, num_beams, max_length_factor, now, started=now, finished=now)
        src_ids = self.engine.encode(pair, texts)
        for i, ids in enumerate(src_ids):
            if len(ids) > lim.max_source_tokens:
                raise ApiError(400, field, f"{field}: text {field}[{i}] has {len(ids)} tokens, over the limit of {lim.max_source_tokens}")
        group = self.engine.batch_group(adapter, self.config.batching.cross_adapter)
        deadline = time.monotonic() + lim.request_timeout_s
        job = Job(src_ids, adapter, pair, num_beams, float(max_length_factor), deadline, group, num_return=num_return)
        try:
            future = self.worker.submit(job)
        except QueueFull as err:
            raise ApiError(429, None, f"too many requests: {err}; retry later", retry_after=lim.retry_after_s) from err
        except WorkerStopped as err:
            raise ApiError(503, None, str(err), retry_after=lim.retry_after_s) from err
        try:
            outputs = await asyncio.wait_for(asyncio.wrap_future(future), timeout=lim.request_timeout_s + 1.0)
        except (DeadlineExceeded, asyncio.TimeoutError) as err:
            future.cancel()
            raise ApiError(503, None, f"the request passed its deadline of {lim.request_timeout_s:g} s; retry later",
                           retry_after=lim.retry_after_s) from err
        except WorkerStopped as err:
            raise ApiError(503, None, str(err), retry_after=lim.retry_after_s) from err
        except AdapterError as err:
            raise ApiError(500, "adapter", f"adapter: {err}") from err
        except Exception as err:
            raise ApiError(500, None, f"translation failed: {type(err).__name__}: {err}") from err
        finally:
            self._sync_adapter_metrics()
        decoded = iter(self.engine.decode(pair, [h for nbest in outputs for h in nbest]))
        self.metrics.translated(adapter, len(texts), sum(map(len, src_ids)), sum(len(nbest[0]) for nbest in outputs))
        return [[next(decoded) for _ in nbest] for nbest in outputs], job

    def formatting(self, pair: tuple[str, str], adapter: str | None, num_beams: int, max_length_factor: float,
                   field: str) -> formats.Request:
        """One request's settings for `formats` (the pair's mask styles computed once)."""
        # a same-language pair has no codec, and copies every mask style intact
        styles = list(MASK_STYLES) if pair[0] == pair[1] else formats.pair_styles(self.engine, pair, self._styles)
        return formats.Request(pair, adapter, num_beams, max_length_factor, field, styles)

    async def detect(self, text: str, field: str = "q") -> list[dict[str, Any]]:
        """LibreTranslate's candidates for `text` among the served sources, most likely first.

        Raises:
            ApiError: 400 naming `field` when detection is unavailable (lingua missing).
        """
        try:  # off the event loop: lingua loads a language's models on first use (seconds)
            return await asyncio.to_thread(self.detector.detect, text)
        except DetectionUnavailable as err:
            raise ApiError(400, field, f"{field}: {err}; or give the source language") from err


def _route_label(app: FastAPI, request: Request) -> str:
    """The `route` label of a request in /metrics: its route's path template, the mount a
    static file came through (`/static`: a Mount sets no route), else "unmatched" (a 404
    for any other path: the raw path is never a label, so label values stay bounded)."""
    route = request.scope.get("route")
    if route is not None and hasattr(route, "path"):
        return route.path
    path = request.url.path
    for mount in app.routes:
        if isinstance(mount, Mount) and path.startswith(mount.path + "/"):
            return mount.path
    return "unmatched"


def create_app(config: ServeConfig, engine: Engine) -> FastAPI:
    """The ASGI app over a loaded engine; the worker starts with the app's lifespan."""
    server = Server(config, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.worker.start()
        # language detection's models load beside the server (seconds, for many sources): a daemon,
        # so a server stopped meanwhile does not wait for it
        threading.Thread(target=server.detector.load, name="detection-models", daemon=True).start()
        yield
        server.worker.stop()
        server.files.close()

    app = FastAPI(title="mtadapt serve", version="1", lifespan=lifespan,
                  description="One base MT model, many adapters; LibreTranslate-compatible.")
    app.state.server = server
    app.openapi = lambda: served_openapi(FastAPI.openapi(app), server)  # type: ignore[method-assign]
    lim = config.limits

    def allowed(path: str) -> set[str]:
        """The methods of every route at `path` (a path may have several routes: GET and POST
        /v1/adapters); empty for an unknown path."""
        return {m for route in app.routes if getattr(route, "path_regex", None) is not None
                and route.path_regex.match(path) for m in getattr(route, "methods", None) or ()}

    @app.middleware("http")
    async def options(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """OPTIONS on a route: 204 with `Allow` (a CORS preflight is answered before, outside this)."""
        if request.method != "OPTIONS":
            return await call_next(request)
        methods = allowed(request.url.path)
        if not methods:
            return await call_next(request)  # the router's 404
        return Response(status_code=204, headers={"Allow": ", ".join(sorted(methods | {"OPTIONS"}))})

    if config.cors_origins:  # outside `options`, inside `count`: preflights are answered here, and counted
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "HEAD", "POST", "DELETE"],
                           allow_headers=["Content-Type", "Authorization", "X-API-Key"], max_age=600)

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as err:  # noqa: BLE001 (a bug: answered here, so that /metrics counts the 500)
            log.error("internal error answering %s %s", request.method, request.url.path, exc_info=err)
            response = internal_error(err)
        server.metrics.request(_route_label(app, request), response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(AccessError)
    async def access_error(request: Request, err: AccessError) -> JSONResponse:
        return JSONResponse({"error": str(err), "field": err.field}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def request_validation(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        field = str(first["loc"][-1])
        return JSONResponse({"error": f"{field}: {first['msg']}", "field": field}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = "not found; see /openapi.json for the routes" if err.status_code == 404 else str(err.detail)
        headers = err.headers
        if err.status_code == 405:  # starlette's Allow names the first route's methods only
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed(request.url.path) | {"OPTIONS"}))}
        return JSONResponse({"error": message, "field": None}, status_code=err.status_code, headers=headers)

    def internal_error(err: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error: {type(err).__name__}", "field": None}, status_code=500)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        return internal_error(err)

    # every status a request route may answer besides 200 (413 body too large, 415 compressed, 503 deadline/stopping)
    errors = {code: {"model": schemas.ErrorResponse} for code in (400, 403, 413, 415, 429, 500, 503)}

    @app.post("/translate", response_model=schemas.LibreTranslateResponse, response_model_exclude_none=True, responses=errors,
              openapi_extra={"requestBody": _form_or_json_schema(schemas.LibreTranslateRequest)})
    async def libretranslate(request: Request) -> dict[str, Any]:
        data = await read_params(request, lim.max_request_bytes, integers=("alternatives",))
        try:
            body = schemas.LibreTranslateRequest.model_validate(data)
        except ValidationError as err:
            raise schemas.validation_error(err) from err
        caller = server.caller(request, body.api_key)
        texts = [body.q] if isinstance(body.q, str) else list(body.q)
        schemas.check_texts(texts, "q", lim.max_texts, lim.max_chars)
        if body.alternatives + 1 > lim.max_num_beams:
            raise ApiError(400, "alternatives", f"alternatives: {body.alternatives} exceeds the limit of {lim.max_num_beams - 1}")
        detected = [(await server.detect(t, "source"))[0] for t in texts] if body.source == "auto" else None
        by_source: dict[str, list[int]] = {}  # each text goes with its own (detected) source
        for i in range(len(texts)):
            by_source.setdefault(detected[i]["language"] if detected else body.source, []).append(i)
        routes = []  # every direction and adapter checked before anything is queued
        for source, rows in by_source.items():
            pair = server.pair(source, body.target, "source", "target")
            routes.append((pair, server.adapter(caller, body.adapter, pair), rows))
        beams = max(config.batching.num_beams, body.alternatives + 1)
        nbest: list[list[str]] = [[] for _ in texts]
        answers = await asyncio.gather(*(formats.translate_texts(
            server, [texts[i] for i in rows], body.format, body.protect_placeholders,
            server.formatting(pair, adapter, beams, config.batching.max_length_factor, "q"), rows, body.alternatives + 1)
            for pair, adapter, rows in routes))
        warnings = []
        for (_, _, rows), (hypotheses, found) in zip(routes, answers):
            warnings += found
            for i, h in zip(rows, hypotheses):
                nbest[i] = h
        single = isinstance(body.q, str)
        result: dict[str, Any] = {"translatedText": nbest[0][0] if single else [h[0] for h in nbest]}
        if warnings:  # LibreTranslate's shape exactly when nothing went wrong
            result["warnings"] = warnings
        if detected is not None:
            result["detectedLanguage"] = detected[0] if single else detected
        if body.alternatives:
            others = [list(dict.fromkeys(a for a in h[1:] if a != h[0])) for h in nbest]  # distinct, best first
            result["alternatives"] = others[0] if single else others
        return result

    @app.post("/detect", response_model=list[schemas.DetectedLanguage], responses=errors,
              openapi_extra={"requestBody": _form_or_json_schema(schemas.DetectRequest)})
    async def detect(request: Request) -> list[dict[str, Any]]:
        data = await read_params(request, lim.max_request_bytes)
        try:
            body = schemas.DetectRequest.model_validate(data)
        except ValidationError as err:
            raise schemas.validation_error(err) from err
        server.caller(request, body.api_key)  # a server with keys answers only its tenants
        schemas.check_texts([body.q], "q", 1, lim.max_chars)
        return await server.detect(body.q)

    @app.get("/languages", response_model=list[schemas.Language])
    async def languages(request: Request) -> list[dict[str, Any]]:
        return [{"code": s, "name": language_name(s), "targets": t} for s, t in server.targets.items()]

    @app.get("/frontend/settings", response_model=schemas.FrontendSettings)
    async def frontend_settings(request: Request) -> dict[str, Any]:
        """LibreTranslate's settings for pages and tools that configure themselves from it."""
        sources = list(server.targets)
        source = "auto" if len(sources) > 1 and server.detector.available else sources[0]
        targets = sorted({t for ts in server.targets.values() for t in ts}) if source == "auto" else server.targets[source]
        target = "en" if "en" in targets and source != "en" else targets[0]
        return {"charLimit": lim.max_chars, "frontendTimeout": FRONTEND_DEBOUNCE_MS,
                "apiKeys": bool(config.api_keys), "keyRequired": bool(config.api_keys), "suggestions": False,
                "filesTranslation": bool(server.file_formats), "supportedFilesFormat": server.file_formats,
                "language": {"source": {"code": source, "name": "Auto Detect" if source == "auto" else language_name(source)},
                             "target": {"code": target, "name": language_name(target)}}}

    @app.post("/v1/translate", response_model=schemas.TranslateResponse, responses=errors,
              openapi_extra={"requestBody": _json_schema(schemas.TranslateRequest)})
    async def translate(request: Request) -> dict[str, Any]:
        arrived = time.monotonic()
        data = await schemas.parse_body(request, lim.max_request_bytes, forms=False)
        try:
            body = schemas.TranslateRequest.model_validate(data)
        except ValidationError as err:
            raise schemas.validation_error(err) from err
        caller = server.caller(request)
        pair = server.pair(body.src_lang, body.tgt_lang, "src_lang", "tgt_lang")
        adapter = server.adapter(caller, body.adapter, pair)
        beams = body.num_beams or config.batching.num_beams
        if beams > lim.max_num_beams:
            raise ApiError(400, "num_beams", f"num_beams: {beams} exceeds the limit of {lim.max_num_beams}")
        settings = server.formatting(pair, adapter, beams, body.max_length_factor or config.batching.max_length_factor, "texts")
        nbest, warnings = await formats.translate_texts(server, list(body.texts), body.format, body.protect_placeholders, settings)
        done, jobs = time.monotonic(), settings.jobs  # none when nothing needed the model (HTML without text)
        timings = {"queue_ms": 1000 * ((jobs[0].started if jobs else done) - arrived), "total_ms": 1000 * (done - arrived),
                   "generate_ms": 1000 * sum(j.finished - j.started for j in jobs)}
        return {"translations": [h[0] for h in nbest], "adapter": adapter, "src_lang": pair[0], "tgt_lang": pair[1],
                "timings": timings, "warnings": warnings}

    def visible(caller: Caller) -> list[dict[str, Any]]:
        return [r.to_dict() for r in engine.registry.records() if caller.may_use(r.name) and r.name not in server.removing]

    @app.get("/v1/adapters")
    async def list_adapters(request: Request) -> dict[str, Any]:
        caller = server.caller(request)
        fingerprint = engine.registry.base_fingerprint
        return {"adapters": visible(caller), "base_allowed": caller.base, "max_loaded": config.max_loaded,
                "precision": engine.precision, "engine": engine.engines()[0][1],
                "base_fingerprint": {"architecture": fingerprint.architecture, "weights": fingerprint.weights}}

    def admin(request: Request) -> Caller:
        return server.keys.admin(key_from_headers({k.lower(): v for k, v in request.headers.items()}))

    @app.post("/v1/adapters", status_code=201, responses=errors,
              openapi_extra={"requestBody": _json_schema(schemas.LoadAdapterRequest)})
    async def load_adapter(request: Request) -> dict[str, Any]:
        admin(request)
        data = await schemas.parse_body(request, lim.max_request_bytes, forms=False)
        try:
            body = schemas.LoadAdapterRequest.model_validate(data)
        except ValidationError as err:
            raise schemas.validation_error(err) from err
        if not ADAPTER_NAME.match(body.name) or body.name == BASE_ADAPTER:
            raise ApiError(400, "name", f"name: {body.name!r} is not a valid adapter name (letters, digits, '_.-', at most 64)")
        if engine.registry.get(body.name) is not None:
            raise ApiError(409, "name", f"name: adapter {body.name!r} is already registered; DELETE it first")
        try:
            folder = adapter_path_under_roots(body.path, config.adapter_roots)
        except PathError as err:
            raise ApiError(err.status, "path", str(err)) from err

        def action() -> dict[str, Any]:
            return engine.register(body.name, folder, body.preload, body.engine, body.compute_type).to_dict()

        try:
            result = await asyncio.wrap_future(server.worker.control(action))
        except ComputeTypeError as err:
            raise ApiError(400, "compute_type", f"compute_type: {err}") from err
        except (AdapterError, ValueError, OSError) as err:
            raise ApiError(400, "path", f"path: {err}") from err
        finally:
            server._sync_adapter_metrics()
        return result

    @app.delete("/v1/adapters/{name}", responses=errors)
    async def delete_adapter(name: str, request: Request) -> dict[str, Any]:
        admin(request)
        if engine.registry.get(name) is None or name in server.removing:
            raise ApiError(404, "name", f"name: no adapter {name!r}")
        users = [f"{s}->{t}" for (s, t), p in engine.pairs.items() if p.adapter == name]
        if users:
            raise ApiError(409, "name", f"name: {name!r} is the default adapter of {', '.join(users)}")
        server.removing.add(name)  # new requests no longer see it; queued ones are served first

        def action() -> dict[str, Any]:
            engine.before_unload(name)
            return engine.registry.unregister(name).to_dict()

        try:
            return await asyncio.wrap_future(server.worker.control(action))
        finally:
            server.removing.discard(name)
            server._sync_adapter_metrics()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "precision": engine.precision}

    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)  # as GET, without the body

    @app.get("/ready")
    async def ready() -> JSONResponse:
        full = server.worker.queue_depth >= lim.max_queue
        ok = server.worker.alive and not full
        body = {"ready": ok, "queue_depth": server.worker.queue_depth, "max_queue": lim.max_queue,
                "adapters_loaded": engine.registry.loaded_names()}
        return JSONResponse(body, status_code=200 if ok else 503,
                            headers=None if ok else {"Retry-After": str(lim.retry_after_s)})

    app.add_api_route("/ready", ready, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        server.metrics.queue_depth(server.worker.queue_depth)
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    upload = {"content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "source", "target"], "properties": {
            "file": {"type": "string", "format": "binary", "description": f"one of {', '.join(formats.FILE_FORMATS)}"},
            "source": {"type": "string"}, "target": {"type": "string"}, "api_key": {"type": "string"},
            "adapter": {"type": "string", "description": "mtadapt: the adapter to translate with"},
            "protect_placeholders": {"type": "boolean", "default": True}}}}}, "required": True}
    server.file_formats = list(formats.FILE_FORMATS)

    @app.post("/translate_file", response_model=schemas.TranslateFileResponse, openapi_extra={"requestBody": upload},
              responses={**errors, 413: {"model": schemas.ErrorResponse}})
    async def translate_file(request: Request) -> dict[str, Any]:
        """LibreTranslate's file translation (.txt, .html, .po/.pot); the result waits at the URL."""
        data = await read_params(request, config.files.max_file_bytes + 64 * 1024, files=("file",))  # + the other fields
        try:
            body = schemas.TranslateFileRequest.model_validate({k: v for k, v in data.items() if k != "file"})
        except ValidationError as err:
            raise schemas.validation_error(err) from err
        caller = server.caller(request, body.api_key)
        filename, content = await uploaded_file(data.get("file"), config.files.max_file_bytes)
        formats.file_format(filename)  # an unknown extension is refused before anything else
        pair = server.pair(body.source, body.target, "source", "target")
        adapter = server.adapter(caller, body.adapter, pair)
        settings = server.formatting(pair, adapter, config.batching.num_beams, config.batching.max_length_factor, "file")
        translated, warnings = await formats.translate_file(server, content, filename, body.protect_placeholders, settings)
        name = translated_name(filename, pair[1])
        file_id = server.files.put(name, translated)
        return {"translatedFileUrl": f"{str(request.base_url).rstrip('/')}/download_file/{file_id}/{name}", "warnings": warnings}

    @app.get("/download_file/{file_id}/{filename}", responses={404: {"model": schemas.ErrorResponse}})
    async def download_file(file_id: str, filename: str) -> FileResponse:
        """A file `/translate_file` translated, until `files.expiry_s` after."""
        path = server.files.path(file_id, filename)
        if path is None:
            raise ApiError(404, "file", f"file: no file {file_id}/{filename}; translated files are kept "
                                        f"{config.files.expiry_s:g} s (files.expiry_s)")
        return FileResponse(path, filename=filename, content_disposition_type="attachment",
                            media_type=CONTENT_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream"))

    # the comparison page (static files shipped in the package; no build step, nothing from a CDN)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0: any free one), for uvicorn to listen on.

    Raises:
        ConfigError: the host does not resolve or is not this machine's, the port is taken or
            needs privileges; the message names the setting (--host / --port).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise ConfigError(f"--host {host!r}: cannot be resolved ({err.strerror}); give an address such as 127.0.0.1 "
                          "(this machine) or 0.0.0.0 (every interface), or a name this machine resolves") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait out TIME_WAIT
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            message = f"--port {port}: {host}:{port} is already in use; choose another port (--port 0: any free one)"
        elif err.errno == errno.EADDRNOTAVAIL:
            message = f"--host {host!r}: not an address of this machine; give 127.0.0.1, 0.0.0.0 or one of its addresses"
        elif err.errno == errno.EACCES:
            message = f"--port {port}: permission denied (ports below 1024 need privileges); choose a port from 1024"
        else:
            message = f"cannot listen on {host}:{port}: {err.strerror}"
        raise ConfigError(message) from None
    sock.set_inheritable(True)
    return sock


def serve(config: ServeConfig) -> None:
    """Bind the port (a taken port or a bad host fails before the model loads), load the
    model and adapters, print the address (the real port for port 0), run uvicorn until
    interrupted."""
    import uvicorn

    from mtadapt.serve.engine import load_engine

    sock = bind_socket(config.host, config.port)
    try:
        engine = load_engine(config)
        app = create_app(config, engine)
        port = sock.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        directions = [f"{s}->{t}" for s, t in engine.pairs]
        shown = ", ".join(directions[:6]) + (f" ... ({len(directions)} directions)" if len(directions) > 6 else "")
        print(f"mtadapt serve: {engine.loaded.name_or_path}, {len(engine.registry.records())} adapter(s), "
              f"pairs {shown}; http://{host}:{port}", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
    finally:
        sock.close()
