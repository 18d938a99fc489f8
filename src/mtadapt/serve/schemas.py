"""Request and response models (pydantic), body parsing, and the one error shape.

Every error is LibreTranslate's shape plus the field it concerns::

    HTTP 400  {"error": "q: empty text at q[1]; give non-empty texts", "field": "q"}

LibreTranslate clients read `error`; the status codes are LibreTranslate's (400 bad input,
403 key, 429 busy, 500 internal) plus 404 (unknown route or adapter in a path), 413
(request too large), 415 (a compressed body), 503 (not ready, deadline passed) and 409 (admin
conflicts).

Bodies: JSON (`application/json`) or forms (`application/x-www-form-urlencoded`,
`multipart/form-data`, what libretranslatepy and LibreTranslate's web page send). A form
may repeat `q` for several texts. JSON is checked before it is decoded: nested at most
`MAX_JSON_DEPTH` arrays/objects deep (a deeper body would exhaust Python's recursion), and every
string valid Unicode (a lone surrogate such as "\ud800" is valid JSON but no text: tokenizers
reject it). Both are 400s naming the top-level field.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from mtadapt.inference.ctranslate2 import QUANTIZATIONS
from mtadapt.inference.engine import ENGINES


def _integral(value: Any) -> Any:
    """4.0 -> 4: JSON Schema's `integer` includes integral numbers written with a fraction."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[StrictInt, BeforeValidator(_integral)]
"""An integer; "3" (a string) and 2.5 are refused, 4.0 is 4."""


NOT_BLANK = r"[^\s\x1c-\x1f\x85\ufeff]"
"""A text needs one character that is not whitespace. Written out so that the schema's
regular expression (ECMA-262's `\s`) and Python's (`str.isspace`) draw the same line: each
engine's `\s` plus the characters only the other counts as space (U+001C-U+001F and U+0085
for Python, U+FEFF for ECMA-262)."""


def is_blank(text: str) -> bool:
    """No character outside `NOT_BLANK`'s whitespace: nothing to translate."""
    return re.search(NOT_BLANK, text) is None


class ApiError(Exception):
    """An answer other than 200: status, the field at fault, a message saying what is valid."""

    def __init__(self, status: int, field: str | None, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.field, self.message, self.retry_after = status, field, message, retry_after

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


class LibreTranslateRequest(BaseModel):
    """`POST /translate` as LibreTranslate defines it, plus mtadapt's `adapter`."""

    model_config = ConfigDict(extra="ignore")  # clients send alternatives, etc.
    q: StrictStr | list[StrictStr] = Field(description="a text or a list of texts")
    source: StrictStr = Field(description="source language code, or 'auto' when one source is served")
    target: StrictStr = Field(description="target language code")
    format: Literal["text", "html"] = Field("text", description="'text', or 'html': block elements' text translated, "
                                                                "inline markup kept in place")
    protect_placeholders: bool = Field(True, description="mtadapt: mask %s, {name}, {n, number}, &amp; and inline tags "
                                                         "during translation; problems reported in `warnings`")
    api_key: StrictStr | None = None
    alternatives: WholeNumber = Field(0, ge=0, description="how many alternative translations to add (from the beam's n-best list)")
    adapter: StrictStr | None = Field(None, description="mtadapt: the adapter to translate with (default: the pair's)")


class DetectedLanguage(BaseModel):
    confidence: float = Field(ge=0, le=100, description="percent")
    language: str


class TranslationWarning(BaseModel):
    """A placeholder that did not come through exactly once, or HTML markup the model lost."""

    where: str = Field(description="q[i], texts[i], a file's `line N`, or an HTML segment")
    kind: Literal["missing", "duplicated", "unexpected", "unprotected", "markup", "entities"]
    placeholder: str
    message: str


class LibreTranslateResponse(BaseModel):
    translatedText: str | list[str]
    warnings: list[TranslationWarning] | None = Field(None, description="mtadapt: placeholders not kept exactly once, "
                                                                  "HTML markup lost (only when there are some)")
    detectedLanguage: DetectedLanguage | list[DetectedLanguage] | None = Field(None, description="when source is 'auto'")
    alternatives: list[str] | list[list[str]] | None = Field(None, description="when alternatives > 0")


class DetectRequest(BaseModel):
    """`POST /detect` as LibreTranslate defines it."""

    model_config = ConfigDict(extra="ignore")
    q: StrictStr = Field(description="the text whose language to identify")
    api_key: StrictStr | None = None


class TranslateRequest(BaseModel):
    """`POST /v1/translate`."""

    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr] = Field(description="texts to translate, each one segment")
    adapter: StrictStr | None = Field(None, description="adapter name; '__base__' = none; default: the pair's")
    src_lang: StrictStr | None = Field(None, description="source code (default: the only served source)")
    tgt_lang: StrictStr | None = Field(None, description="target code (default: the only target of the source)")
    num_beams: Annotated[WholeNumber, Field(ge=1)] | None = Field(None, description="beam size (default: the server's)")
    max_length_factor: StrictFloat | None = Field(None, gt=0, le=10, description="output length limit factor")
    format: Literal["text", "html"] = Field("text", description="'text' or 'html' (as /translate)")
    protect_placeholders: StrictBool = Field(True, description="mask placeholders during translation (as /translate)")


class Timings(BaseModel):
    queue_ms: float
    generate_ms: float
    total_ms: float


class TranslateResponse(BaseModel):
    translations: list[str]
    adapter: str | None
    src_lang: str
    tgt_lang: str
    timings: Timings
    warnings: list[TranslationWarning] = Field(default_factory=list)


class TranslateFileRequest(BaseModel):
    """`POST /translate_file`'s fields besides `file` (multipart/form-data, as LibreTranslate)."""

    model_config = ConfigDict(extra="ignore")
    source: StrictStr = Field(description="source language code")
    target: StrictStr = Field(description="target language code")
    api_key: StrictStr | None = None
    adapter: StrictStr | None = Field(None, description="mtadapt: the adapter to translate with (default: the pair's)")
    protect_placeholders: bool = Field(True, description="mask placeholders during translation (on for every format)")


class TranslateFileResponse(BaseModel):
    translatedFileUrl: str = Field(description="where to GET the translated file (kept for files.expiry_s)")
    warnings: list[TranslationWarning] = Field(default_factory=list, description="mtadapt: placeholder problems")


class LoadAdapterRequest(BaseModel):
    """`POST /v1/adapters`: register (and load) a folder under an adapter root."""

    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    path: StrictStr = Field(description="folder under a configured adapter root (absolute, or relative to a root)")
    preload: StrictBool = True
    engine: Literal[ENGINES] | None = Field(None, description="what serves it; default: the server's engine")  # type: ignore[valid-type]
    compute_type: Literal[QUANTIZATIONS] | None = Field(  # type: ignore[valid-type]
        None, description="CTranslate2's compute type; default: the server's")


class Language(BaseModel):
    code: str
    name: str
    targets: list[str]


class LanguageChoice(BaseModel):
    code: str
    name: str


class DefaultLanguages(BaseModel):
    source: LanguageChoice
    target: LanguageChoice


class FrontendSettings(BaseModel):
    """`GET /frontend/settings`: LibreTranslate's field names, what its page and tools read."""

    charLimit: int = Field(description="characters per text")
    frontendTimeout: int = Field(description="milliseconds a page waits after the last keystroke before it translates")
    apiKeys: bool = Field(description="the server has API keys")
    keyRequired: bool = Field(description="a request without a key is refused")
    suggestions: bool = Field(description="POST /suggest is offered (never, here)")
    filesTranslation: bool
    supportedFilesFormat: list[str] = Field(description="extensions POST /translate_file accepts")
    language: DefaultLanguages = Field(description="the page's default source ('auto' with detection) and target")


class ErrorResponse(BaseModel):
    error: str
    field: str | None = None


_MISSING_HINTS = {
    "q": "give the text (a string or a list of strings)",
    "source": "give the source language code (see GET /languages)",
    "target": "give the target language code (see GET /languages)",
    "texts": "give a list of strings",
    "name": "give the adapter name",
    "path": "give the adapter folder",
}


def validation_error(err: ValidationError) -> ApiError:
    """The first problem of a pydantic error as a 400 naming the field."""
    first = err.errors()[0]
    loc = [p for p in first["loc"] if isinstance(p, int) or p not in ("str", "list[str]", "int", "float")]
    field = str(loc[0]) if loc else "body"
    where = field + "".join(f"[{p}]" for p in loc[1:] if isinstance(p, int))
    kind = first["type"]
    if kind == "missing":
        return ApiError(400, field, f"{field}: missing; {_MISSING_HINTS.get(field, 'required')}")
    if kind == "extra_forbidden":
        return ApiError(400, field, f"{field}: unknown field")
    if field == "q" and len(loc) == 1:
        return ApiError(400, field, f"q: expected a string or a list of strings, got {type(first.get('input')).__name__}")
    return ApiError(400, field, f"{where}: {first['msg']} (got {first.get('input')!r})"[:500])


MAX_JSON_DEPTH = 32
"""Deepest nesting of JSON arrays and objects a body may have (a request needs 2: {"q": [...]})."""

_JSON_SYNTAX = re.compile(r'[\[\]{}"\\]')
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_json_depth(text: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than `max_depth` before decoding it (one pass, no recursion).

    Raises:
        ApiError: 400 naming the top-level field whose value is too deep ("body" for the body).
    """
    depth, in_string, skip_to, string_start = 0, False, 0, 0
    key = None  # the last string closed at depth 1: the top-level field being read
    for m in _JSON_SYNTAX.finditer(text):
        i, c = m.start(), m.group()
        if i < skip_to:  # the character after a backslash
            continue
        if in_string:
            if c == "\\":
                skip_to = i + 2
            elif c == '"':
                in_string = False
                if depth == 1:
                    key = text[string_start:i + 1]
        elif c == '"':
            in_string, string_start = True, i
        elif c in "[{":
            depth += 1
            if depth > max_depth:
                try:
                    field = json.loads(key) if key is not None else "body"
                except ValueError:
                    field = "body"
                raise ApiError(400, field, f"{field}: nested deeper than {max_depth} levels of JSON arrays/objects")
        else:
            depth -= 1


def check_strings(data: Any, field: str = "body") -> None:
    """Every string in decoded JSON (keys too) is valid Unicode: no lone surrogate.

    Raises:
        ApiError: 400 naming the top-level field and where in it ("q[2]").
    """
    stack: list[tuple[Any, str, str]] = [(data, field, field)]
    while stack:  # depth-first, without recursion; depth is bounded by check_json_depth anyway
        value, top, where = stack.pop()
        if isinstance(value, str):
            bad = _SURROGATE.search(value)
            if bad:
                raise ApiError(400, top, f"{top}: a lone surrogate (U+{ord(bad.group()):04X}) at character {bad.start()} "
                                         f"of {where} is not text; send valid Unicode (UTF-8)")
        elif isinstance(value, list):
            stack.extend((v, top, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, dict):
            for k, v in reversed(list(value.items())):
                stack.append((k, top, "a field name" if top == "body" else f"a key in {where}"))
                stack.append((v, k if top == "body" else top, k if top == "body" else f"{where}[{k!r}]"))


async def read_body(request: Any, max_bytes: int) -> bytes:
    """The request body, refusing more than `max_bytes` (413) without reading it all, and
    compressed bodies (415: the server does not decompress)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, "body", f"body: content encoding {encoding!r} not supported; send the body uncompressed")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise ApiError(413, "body", f"body: {length} bytes exceeds the limit of {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, "body", f"body: more than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: Any, max_bytes: int, forms: bool = True, files: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object or a form as a dict (a repeated form `q` becomes a list).

    Args:
        files: multipart fields that may hold an uploaded file (kept as starlette `UploadFile`).

    Raises:
        ApiError: 413 too large, 400 malformed JSON / not an object / unsupported type, a file
            in a field not in `files`.
    """
    body = await read_body(request, max_bytes)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if forms and ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        request._body = body  # starlette's form parser reads the cached body (the stream is consumed)
        form = await request.form()
        data: dict[str, Any] = {}
        for key in form.keys():
            values = form.getlist(key)
            if key not in files and any(not isinstance(v, str) for v in values):
                raise ApiError(400, key, f"{key}: file uploads are not supported; send text")
            data[key] = values if key == "q" and len(values) > 1 else values[0]
        check_strings(data)  # an UploadFile is no string: skipped
        return data
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        accepted = "application/json" + (", application/x-www-form-urlencoded, multipart/form-data" if forms else "")
        raise ApiError(400, "body", f"body: content-type {ctype!r} is not supported; send {accepted}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, "body", f"body: invalid UTF-8 at byte {err.start}") from err
    check_json_depth(text)
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise ApiError(400, "body", f"body: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from err
    if not isinstance(data, dict):
        raise ApiError(400, "body", f"body: expected a JSON object, got {type(data).__name__}")
    check_strings(data)
    return data


def check_texts(texts: list[str], field: str, max_texts: int, max_chars: int) -> None:
    """Limits and emptiness of a request's texts.

    Raises:
        ApiError: no texts, too many, an empty or oversize one (400, naming its index).
    """
    if not texts:
        raise ApiError(400, field, f"{field}: empty list; give at least one text")
    if len(texts) > max_texts:
        raise ApiError(400, field, f"{field}: {len(texts)} texts exceed the limit of {max_texts} per request")
    for i, text in enumerate(texts):
        if is_blank(text):
            raise ApiError(400, field, f"{field}: empty text at {field}[{i}]; give non-empty texts")
        if len(text) > max_chars:
            raise ApiError(400, field, f"{field}: text {field}[{i}] has {len(text)} characters, over the limit of {max_chars}")
