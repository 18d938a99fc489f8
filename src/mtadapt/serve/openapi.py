"""The OpenAPI document of one running server: exactly what it accepts.

FastAPI writes the document from the pydantic models, which know the types but not this
server's settings. `served_openapi` adds them, so that every request the document allows is
one the server answers with a 2xx (schemathesis `--checks all` holds the server to that):

    q / texts          1..limits.max_texts texts of 1..limits.max_chars characters, not blank
    source / src_lang  enum of the served sources (+ "auto" when it can be resolved)
    target / tgt_lang  enum of the served targets; per source (anyOf) unless every served
                       source reaches every target (a same-language pair is the text unchanged)
    adapter            enum of the registered adapters and "__base__"
    null               JSON only: a form or query string has none (leave the field out)
    num_beams          1..limits.max_num_beams; alternatives 0..max_num_beams - 1

It is built on each request of /openapi.json: adapters come and go (POST/DELETE /v1/adapters).
"""

from __future__ import annotations

import copy
from typing import Any

from mtadapt.serve.config import BASE_ADAPTER
from mtadapt.serve.schemas import NOT_BLANK  # the server's own blank test



def _text(max_chars: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": NOT_BLANK}


def _nullable(schema: dict[str, Any], nullable: bool) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]} if nullable else schema


def _directions(server: Any, source_key: str, target_key: str, auto: str | None) -> tuple[dict, list[dict] | None]:
    """(properties for source and target, per-source alternatives when targets depend on the source)."""
    targets = server.targets  # source -> sorted targets
    every_target = sorted({t for ts in targets.values() for t in ts})
    reach = {s: sorted(set(ts) | ({s} & set(every_target))) for s, ts in targets.items()}  # + the identity
    sources = list(targets)
    full = all(r == every_target for r in reach.values())
    with_auto = sources + ([auto] if auto and (full or len(sources) == 1) else [])
    properties = {source_key: {"type": "string", "enum": with_auto}, target_key: {"type": "string", "enum": every_target}}
    if full:
        return properties, None
    return properties, [{"properties": {source_key: {"const": s}, target_key: {"enum": r}}} for s, r in reach.items()]


def _adapters(server: Any) -> list[str]:
    reg = server.engine.registry
    return [BASE_ADAPTER] + sorted(r.name for r in reg.records() if r.name not in server.removing)


def _patch_libretranslate(schema: dict[str, Any], server: Any) -> None:
    lim = server.config.limits
    props = schema["properties"]
    text = _text(lim.max_chars)
    props["q"] = {**{k: v for k, v in props["q"].items() if k != "anyOf"},
                  "anyOf": [text, {"type": "array", "items": text, "minItems": 1, "maxItems": lim.max_texts}]}
    auto = "auto" if server.detector.available or len(server.targets) == 1 else None
    directions, per_source = _directions(server, "source", "target", auto)
    for key, value in directions.items():
        props[key] = {**props[key], **value}
    if per_source is not None:
        schema["anyOf"] = per_source
    if "alternatives" in props:
        props["alternatives"]["maximum"] = lim.max_num_beams - 1
    props["adapter"] = {**props["adapter"], "anyOf": [{"type": "string", "enum": _adapters(server)}, {"type": "null"}]}


def _patch_detect(schema: dict[str, Any], server: Any) -> None:
    schema["properties"]["q"] = {**schema["properties"]["q"], **_text(server.config.limits.max_chars)}


def _patch_native(schema: dict[str, Any], server: Any) -> None:
    lim = server.config.limits
    props = schema["properties"]
    props["texts"] = {**props["texts"], "items": _text(lim.max_chars), "minItems": 1, "maxItems": lim.max_texts}
    directions, per_source = _directions(server, "src_lang", "tgt_lang", None)
    one_source = len(server.targets) == 1
    one_target = all(len(ts) == 1 for ts in server.targets.values())
    for key, nullable in (("src_lang", one_source), ("tgt_lang", one_target)):  # null: the only choice
        kept = {k: v for k, v in props[key].items() if k not in ("anyOf", "default")}
        props[key] = {**kept, **_nullable(directions[key], nullable)}
        if not nullable:
            schema.setdefault("required", []).append(key)
    if per_source is not None:
        schema["anyOf"] = per_source
    props["num_beams"] = {**props["num_beams"], "anyOf": [{"type": "integer", "minimum": 1, "maximum": lim.max_num_beams},
                                                          {"type": "null"}]}
    props["adapter"] = {**props["adapter"], "anyOf": [{"type": "string", "enum": _adapters(server)}, {"type": "null"}]}


def _patch_file(schema: dict[str, Any], server: Any) -> None:
    """`/translate_file`'s fields: the served directions and adapters (whether the file itself can be
    translated, its extension, encoding and syntax, is beyond a schema: the route says with a 400)."""
    props = schema["properties"]
    directions, per_source = _directions(server, "source", "target", None)
    for key, value in directions.items():
        props[key] = {**props[key], **value}
    if per_source is not None:
        schema["anyOf"] = per_source
    props["adapter"] = {**props["adapter"], "enum": _adapters(server)}


def _without_null(schema: dict[str, Any]) -> None:
    """A form or query string has no null (an absent field is the default): drop the option."""
    for name, prop in schema.get("properties", {}).items():
        options = [o for o in prop.get("anyOf", []) if o != {"type": "null"}]
        if "anyOf" in prop and len(options) < len(prop["anyOf"]):
            kept = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
            schema["properties"][name] = {**kept, **options[0]} if len(options) == 1 else {**kept, "anyOf": options}


_PATCHES = {("/translate", "post"): _patch_libretranslate, ("/detect", "post"): _patch_detect,
            ("/v1/translate", "post"): _patch_native, ("/translate_file", "post"): _patch_file}


def served_openapi(base: dict[str, Any], server: Any) -> dict[str, Any]:
    """A copy of FastAPI's document `base` with this server's languages, adapters and limits."""
    spec = copy.deepcopy(base)
    for (path, method), patch in _PATCHES.items():
        operation = spec.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            media["schema"] = copy.deepcopy(media["schema"])  # FastAPI shares one dict between media types
            patch(media["schema"], server)
            if media_type != "application/json":
                _without_null(media["schema"])
    return spec
