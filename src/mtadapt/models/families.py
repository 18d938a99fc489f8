"""Model families: how each marks languages and where methods attach.

A family is plain data (composition, no subclassing): its name, the HF `model_type`
values that identify it, how languages are marked, and its `ModelTargets`.

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

from dataclasses import dataclass
from typing import Literal

from mtadapt.models.targets import BART_LIKE, MARIAN_NATIVE, T5, ModelTargets

FamilyName = Literal["mbart50", "m2m100", "nllb", "marian", "t5", "marian_native"]
LanguageStyle = Literal["codes", "marian_tags", "t5_prefix", "none"]


@dataclass(frozen=True)
class Family:
    """What mtadapt needs to know about one model family.

    Attributes:
        name: Registry key, used in recipes (`model.family`).
        model_types: HF `config.model_type` values that belong to this family.
        language_style: How source and target languages are marked (see module table).
        targets: Module-name patterns for the methods.
    """

    name: FamilyName
    model_types: tuple[str, ...]
    language_style: LanguageStyle
    targets: ModelTargets


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("mbart50", ("mbart",), "codes", BART_LIKE),
        Family("m2m100", ("m2m_100",), "codes", BART_LIKE),
        Family("nllb", ("m2m_100", "nllb-moe"), "codes", BART_LIKE),
        Family("marian", ("marian",), "marian_tags", BART_LIKE),
        Family("t5", ("t5", "mt5", "umt5"), "t5_prefix", T5),
        Family("marian_native", ("marian_native",), "none", MARIAN_NATIVE),
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
