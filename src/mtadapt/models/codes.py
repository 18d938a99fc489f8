"""Language codes and names: the one table of English language names, and the one normaliser
from a model's language code to the short code people type.

    public_code("de_DE") == "de"        mBART-50          public_code("__de__") == "de"   M2M100 token
    public_code("deu_Latn") == "deu"    NLLB              public_code("de") == "de"       already short
    language_name("pt_XX") == "Portuguese"                language_name("xx") == "xx"     unknown: the code
    corpus_suffix("de_DE") == "de"      a Moses file's suffix: mBART's region dropped, any other
                                        code (NLLB's `deu_Latn`) kept whole, as corpora are named

`LANGUAGE_NAMES` (ISO 639-1 and the 639-3 codes NLLB-style models add) serves T5's task
prefixes (`translate German to English: `), the server's `/languages` and
`/frontend/settings`. The server keeps LibreTranslate's codes, which are these public codes.
"""

from __future__ import annotations

import re

LANGUAGE_NAMES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "ast": "Asturian", "az": "Azerbaijani", "ba": "Bashkir",
    "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "br": "Breton", "bs": "Bosnian", "ca": "Catalan",
    "ceb": "Cebuano", "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "ff": "Fulah", "fi": "Finnish", "fr": "French",
    "fy": "Western Frisian", "ga": "Irish", "gd": "Scottish Gaelic", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "ig": "Igbo", "ilo": "Iloko", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean",
    "lb": "Luxembourgish", "lg": "Ganda", "ln": "Lingala", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian",
    "mg": "Malagasy", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "ms": "Malay",
    "my": "Burmese", "ne": "Nepali", "nl": "Dutch", "no": "Norwegian", "ns": "Northern Sotho", "oc": "Occitan",
    "or": "Oriya", "pa": "Punjabi", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sd": "Sindhi", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "so": "Somali",
    "sq": "Albanian", "sr": "Serbian", "ss": "Swati", "su": "Sundanese", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tn": "Tswana", "tr": "Turkish", "uk": "Ukrainian",
    "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "wo": "Wolof", "xh": "Xhosa", "yi": "Yiddish", "yo": "Yoruba",
    "zh": "Chinese", "zu": "Zulu",
    # ISO 639-3, as NLLB's codes start (eng_Latn, deu_Latn, por_Latn ...)
    "eng": "English", "deu": "German", "fra": "French", "spa": "Spanish", "por": "Portuguese", "ita": "Italian",
    "nld": "Dutch", "rus": "Russian", "zho": "Chinese", "jpn": "Japanese", "arb": "Arabic", "pol": "Polish",
    "ces": "Czech", "ron": "Romanian", "tur": "Turkish", "ukr": "Ukrainian", "fin": "Finnish", "est": "Estonian",
}

_M2M100_TOKEN = re.compile(r"^__([a-z]{2,3})__$")  # the language token itself: `__de__`
_REGION = re.compile(r"^([a-z]{2,3})_[A-Z]{2}$")  # mBART-50: language + region (`de_DE`, `en_XX`)


def public_code(model_code: str | None) -> str:
    """The short code a person types for a model's language code (see the module table):
    the part before `_` (`de_DE` -> `de`, `deu_Latn` -> `deu`), an M2M100 token's inside
    (`__de__` -> `de`); a short code stays as it is; None -> ""."""
    code = model_code or ""
    token = _M2M100_TOKEN.match(code)
    return token.group(1) if token else code.split("_")[0]


def public_codes(model_codes: list[str]) -> dict[str, str]:
    """Model code -> public code for a model's whole list; where two model codes share a public
    code (NLLB's `zho_Hans` / `zho_Hant`), both keep their full codes."""
    short = {c: public_code(c) for c in model_codes}
    counts: dict[str, int] = {}
    for s in short.values():
        counts[s] = counts.get(s, 0) + 1
    return {c: s if counts[s] == 1 else c for c, s in short.items()}


def language_name(code: str) -> str:
    """English name of a model or public code; the code itself when the table lacks it."""
    return LANGUAGE_NAMES.get(code) or LANGUAGE_NAMES.get(public_code(code)) or code


def corpus_suffix(code: str | None) -> str:
    """Suffix of a Moses corpus file for a model language code: mBART's `de_DE` -> `de`; any
    other code unchanged (corpora for NLLB are named `train.deu_Latn`); None -> "src"."""
    if code is None:
        return "src"
    match = _REGION.match(code)
    return match.group(1) if match else code
