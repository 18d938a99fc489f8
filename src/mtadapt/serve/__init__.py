"""`mtadapt serve`: one base model, many adapters, one HTTP server that batches across adapters.

    config.py    ServeConfig (YAML, validated like recipes: every problem with file:line)
    security.py  API keys per tenant, the admin key, adapter paths under roots, size limits
    registry.py  the adapters the server knows: records, loading, LRU eviction (`max_loaded`)
    engine.py    the base model, one codec per language pair, generation of a batch of jobs
    worker.py    the one generation thread: bounded queue, batch formation, retries, deadlines
    metrics.py   Prometheus counters, gauges and histograms
    schemas.py   pydantic request/response models, JSON/form parsing, 4xx errors naming fields
    params.py    LibreTranslate parameters from the query string and the body, merged
    languages.py the served directions by default (every one the model knows), names, detection
    openapi.py   /openapi.json with this server's languages, adapters and limits
    app.py       the ASGI app (FastAPI): LibreTranslate-compatible and native routes; `serve()`
    static/      the page at `/` comparing adapters side by side (HTML, CSS, JS; no build step)

Threads: the event loop tokenizes, validates, queues and answers; the worker thread owns the
model (generation, adapter loads and unloads), so loading an adapter never races a forward.
"""
