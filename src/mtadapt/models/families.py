"""Model families: how each marks languages and where methods attach.

A family is plain data (composition, no subclassing): its name, the HF `model_type`
values that identify it, how languages are marked, and its `ModelTargets`. What differs
between families is declared on the `Family` (which codes its tokenizer knows, how a source
is marked, whether it is mtadapt's own Marian port), so language handling
(`mtadapt.models.languages`) never compares family names.

| family        | source                       | target / generation                       |
|---------------|------------------------------|-------------------------------------------|
| mbart50       | [src_code] X </s>            | labels [tgt_code] Y </s>; forced BOS code  |
| m2m100        | [__src__] X </s>             | labels [__tgt__] Y </s>; forced BOS code   |
| nllb          | [src_code] X </s>            | labels [tgt_code] Y </s>; forced BOS code  |
| marian        | [>>tgt<<] X </s> (multi)     | Y </s>                                     |
| t5            | "translate A to B: " X </s>  | Y </s>                                     |
| marian_native | X </s> (+ optional tag)      | Y </s>                                     |
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from mtadapt.models.codes import LANGUAGE_NAMES
from mtadapt.models.targets import BART_LIKE, MARIAN_NATIVE, T5, ModelTargets

FamilyName = Literal["mbart50", "m2m100", "nllb", "marian", "t5", "marian_native"]
LanguageStyle = Literal["codes", "marian_tags", "t5_prefix", "none"]

# T5 was pre-trained with English task prefixes naming languages in full (names: models.codes).
T5_LANGUAGE_NAMES = {code: LANGUAGE_NAMES[code] for code in
                     ("en", "de", "fr", "ro", "es", "pt", "it", "nl", "ru", "zh", "ja", "pl", "cs", "fi", "tr")}
_NLLB_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")


def _no_codes(tokenizer: Any) -> list[str]:
    return []


def _mbart50_codes(tokenizer: Any) -> list[str]:
    return sorted(getattr(tokenizer, "lang_code_to_id", {}))


def _m2m100_codes(tokenizer: Any) -> list[str]:
    return sorted(getattr(tokenizer, "lang_code_to_token", {}))


def _nllb_codes(tokenizer: Any) -> list[str]:
    return sorted(t for t in tokenizer.all_special_tokens if _NLLB_CODE.match(t))


def _marian_codes(tokenizer: Any) -> list[str]:
    return sorted(c[2:-2] for c in getattr(tokenizer, "supported_language_codes", []))


def _t5_codes(tokenizer: Any) -> list[str]:
    return sorted(T5_LANGUAGE_NAMES)


def _code_is_token(tokenizer: Any, code: str) -> str:
    return code


def _m2m100_code_token(tokenizer: Any, code: str) -> str:
    return tokenizer.lang_code_to_token[code]  # "en" -> "__en__"


def _source_unmarked(text: str, src_lang: str | None, tgt_lang: str | None, tokenizer: Any) -> str:
    return text  # codes families: the tokenizer adds the source code itself


def _t5_task_prefix(text: str, src_lang: str | None, tgt_lang: str | None, tokenizer: Any) -> str:
    src = T5_LANGUAGE_NAMES.get(src_lang or "", src_lang)
    tgt = T5_LANGUAGE_NAMES.get(tgt_lang or "", tgt_lang)
    return f"translate {src} to {tgt}: {text}"


def _marian_target_tag(text: str, src_lang: str | None, tgt_lang: str | None, tokenizer: Any) -> str:
    # only multilingual Marian models (whose tokenizer lists >>xx<< codes) take a tag
    return f">>{tgt_lang}<< {text}" if tgt_lang and _marian_codes(tokenizer) else text


def _prepared_from_labels(model: Any, labels: Any) -> Any:
    """mBART, Marian, T5: the model's own `prepare_decoder_input_ids_from_labels`."""
    return model.prepare_decoder_input_ids_from_labels(labels=labels)


def _m2m100_decoder_inputs(model: Any, labels: Any) -> Any:
    """M2M100/NLLB: what their forward builds from labels (no `prepare_...` method there):
    [decoder_start, y_0, ..., y_(T-2)] with -100 replaced by the pad id."""
    from transformers.models.m2m_100.modeling_m2m_100 import shift_tokens_right

    return shift_tokens_right(labels, model.config.pad_token_id, model.config.decoder_start_token_id)


def _native_decoder_inputs(model: Any, labels: Any) -> Any:
    """mtadapt's Marian port: its forward's own shift (position 0 is a zero vector)."""
    from mtadapt.models.marian_native.model import shift_right

    return shift_right(labels, model.config.pad_id)


@dataclass(frozen=True)
class Family:
    """What mtadapt needs to know about one model family.

    Attributes:
        name: Registry key, used in recipes (`model.family`).
        model_types: HF `config.model_type` values that belong to this family.
        language_style: How source and target languages are marked (see module table).
        targets: Module-name patterns for the methods.
        language_codes: The codes a tokenizer of this family can mark, in its own spelling.
        code_token: The token a target code is written as (M2M100: "en" -> "__en__").
        mark_source: A source text as the model reads it (T5's task prefix, Marian's >>tgt<<).
        source_code_checked: The source code must be one the tokenizer knows (multilingual
            Marian marks only the target language, so any source code is accepted).
        code_aliases: Other accepted spellings of codes (T5: the full language names).
        native: mtadapt's own PyTorch port of Marian (Bergamot students): a SentencePiece
            tokenizer with list `encode`/`decode`, generation of its own and a zero-vector
            first decoder input, instead of a transformers model and tokenizer.
        decoder_inputs: (model, labels (B, T)) -> decoder input ids (B, T), exactly what the
            model's forward would build from `labels`. Training passes these instead of the
            labels: given labels, a model computes a cross-entropy of its own over the whole
            vocabulary, which the loop would throw away.
    """

    name: FamilyName
    model_types: tuple[str, ...]
    language_style: LanguageStyle
    targets: ModelTargets
    language_codes: Callable[[Any], list[str]] = _no_codes
    code_token: Callable[[Any, str], str] = _code_is_token
    mark_source: Callable[[str, str | None, str | None, Any], str] = _source_unmarked
    source_code_checked: bool = True
    code_aliases: tuple[str, ...] = ()
    native: bool = False
    decoder_inputs: Callable[[Any, Any], Any] = _prepared_from_labels


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("mbart50", ("mbart",), "codes", BART_LIKE, language_codes=_mbart50_codes),
        Family("m2m100", ("m2m_100",), "codes", BART_LIKE, language_codes=_m2m100_codes, code_token=_m2m100_code_token,
               decoder_inputs=_m2m100_decoder_inputs),
        Family("nllb", ("m2m_100", "nllb-moe"), "codes", BART_LIKE, language_codes=_nllb_codes,
               decoder_inputs=_m2m100_decoder_inputs),
        Family("marian", ("marian",), "marian_tags", BART_LIKE, language_codes=_marian_codes,
               mark_source=_marian_target_tag, source_code_checked=False),
        Family("t5", ("t5", "mt5", "umt5"), "t5_prefix", T5, language_codes=_t5_codes, mark_source=_t5_task_prefix,
               code_aliases=tuple(T5_LANGUAGE_NAMES.values())),
        Family("marian_native", ("marian_native",), "none", MARIAN_NATIVE, native=True,
               decoder_inputs=_native_decoder_inputs),
    )
}


def get_family(name: str) -> Family:
    """Look a family up by name.

    Raises:
        ValueError: naming the valid families.
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; valid families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def detect_family(model_type: str, tokenizer_class: str | None = None) -> Family:
    """Infer the family from a HF config's `model_type` (and tokenizer class for m2m_100/NLLB,
    which share an architecture).

    Raises:
        ValueError: when the model type belongs to no known family; says how to set it.
    """
    if model_type == "m2m_100" and tokenizer_class and "nllb" in tokenizer_class.lower():
        return FAMILIES["nllb"]
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise ValueError(
        f"cannot tell the model family of model_type {model_type!r}; set `model.family` to one of "
        f"{', '.join(FAMILIES)}"
    )
