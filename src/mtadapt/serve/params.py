"""A LibreTranslate request's parameters, wherever the client put them.

LibreTranslate reads Flask's `request.values`: the query string and the body together. Its
clients rely on that: deep-translator's `LibreTranslator` POSTs `/translate` with every
parameter in the query string and no body; libretranslatepy and LibreTranslate's own page send
a JSON body or a form. So `read_params` merges

    query string  (?q=...&source=de; a repeated `q` is a list)
    + body        (JSON object, application/x-www-form-urlencoded or multipart/form-data)

into one dict, which the route validates with its pydantic model. A parameter given in both
places is a 400 naming it (neither is dropped silently). Form and query values are text, so
the integer parameters a route names (`alternatives`) are converted here, with a 400 naming
the parameter when the text is not a whole number; JSON values keep their JSON types.
"""

from __future__ import annotations

from typing import Any

from mtadapt.serve.schemas import ApiError, parse_body

LIST_FIELDS = ("q",)
"""Parameters whose repetition in a form or query string makes a list (several texts)."""


def _text_int(field: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return int(value.strip())
    except ValueError:
        raise ApiError(400, field, f"{field}: {value!r} is not a whole number") from None


async def read_params(request: Any, max_bytes: int, integers: tuple[str, ...] = (),
                      files: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request's parameters from its query string and body (see the module docstring).

    Args:
        integers: parameters converted from text to int when they come from a form or the query.
        files: multipart fields that may carry an uploaded file (`/translate_file`'s `file`).

    Raises:
        ApiError: 400 (malformed body, unsupported content type, a parameter given twice, an
            integer parameter that is not one), 413 (body too large).
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    from_text = ctype in ("application/x-www-form-urlencoded", "multipart/form-data")
    body = await parse_body(request, max_bytes, files=files)
    query: dict[str, Any] = {}
    for key in request.query_params.keys():
        values = request.query_params.getlist(key)
        query[key] = values if key in LIST_FIELDS and len(values) > 1 else values[0]
    for key in query.keys() & body.keys():
        raise ApiError(400, key, f"{key}: given both in the query string and in the body; give it once")
    for key in integers:
        if key in query:
            query[key] = _text_int(key, query[key])
        if from_text and key in body:
            body[key] = _text_int(key, body[key])
    return {**query, **body}
