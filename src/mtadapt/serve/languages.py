"""The languages a server speaks: its directions by default, their names, and identification.

Directions, when the config names none (no `pairs`, no `--src-lang/--tgt-lang`), are every
ordered pair of the languages the model family marks, in LibreTranslate's codes:

    mbart50, m2m100, nllb   every (source, target), source != target, of the tokenizer's codes
    marian (bilingual)      the tokenizer's `source_lang -> target_lang`
    tiny:<family>           both directions of the family's toy languages (TOY_LANGUAGES)

A model code becomes a public code by `models.codes.public_codes` (`de_DE` -> `de`; NLLB's
`zho_Hans`/`zho_Hant` keep their full codes); names come from `models.codes.LANGUAGE_NAMES`.

Identification (`source: "auto"`, `/detect`) uses lingua-language-detector, whose models ship
in its wheel (nothing is downloaded at run time), restricted to the served source languages
that lingua knows. It is optional (`pip install 'mtadapt[serve]'`); without it `auto` works
only when one source is served.
"""

from __future__ import annotations

import threading
from typing import Any

from mtadapt.errors import ConfigError
from mtadapt.models.codes import language_name, public_codes  # noqa: F401  (the server's names and codes)
from mtadapt.serve.config import PairEntry


def every_direction(model_name: str, loaded: Any) -> list[PairEntry]:
    """Every direction the model family knows (see the module table), as served pairs.

    Raises:
        ConfigError: the family names no languages (T5, multilingual Marian without a
            source language, Marian-native); the message says to give `pairs`.
    """
    family, tokenizer = loaded.family, loaded.tokenizer
    if model_name.startswith("tiny:"):
        from mtadapt.models.tiny import TOY_LANGUAGES

        codes = [c for c in TOY_LANGUAGES.get(family.name, (None, None)) if c]
    elif family.language_style == "codes":
        codes = list(family.language_codes(tokenizer))
    elif family.name == "marian" and getattr(tokenizer, "source_lang", None) and getattr(tokenizer, "target_lang", None):
        src, tgt = tokenizer.source_lang, tokenizer.target_lang
        return [PairEntry(src, tgt, src, tgt)]
    else:
        codes = []
    if len(codes) < 2:
        raise ConfigError(f"pairs: {model_name} ({family.name}) does not say which languages it translates; give the "
                          "served direction(s): `pairs` in the config, or --src-lang and --tgt-lang")
    public = public_codes(codes)
    return [PairEntry(public[s], public[t], s, t) for s in codes for t in codes if s != t]


def _lingua_language(code: str) -> Any:
    try:
        from lingua import IsoCode639_1, IsoCode639_3, Language
    except ImportError:
        return None
    try:
        iso = IsoCode639_1.from_str(code) if len(code) == 2 else IsoCode639_3.from_str(code)
    except ValueError:
        return None
    try:
        return Language.from_iso_code_639_1(iso) if len(code) == 2 else Language.from_iso_code_639_3(iso)
    except ValueError:
        return None


class DetectionUnavailable(Exception):
    """Language identification is not installed or knows none of the served sources."""


class LanguageDetector:
    """Language identification restricted to the served source codes.

    `detect(text)` returns LibreTranslate's shape, most likely first:
    `[{"confidence": 0-100, "language": "de"}, ...]`; confidence 0 everywhere means the text
    looked like none of them (digits, punctuation), and the first entry is then only a guess.

    lingua's models take time and memory to load (the 45 mBART-50 sources it knows: 27 s and
    about 0.5 GB on 2 busy cores), so `load()` loads them all at once, which the server starts
    in a thread when it starts; a detection before then waits for it.
    """

    def __init__(self, sources: list[str]) -> None:
        self.sources = sorted(sources)
        self.known: dict[Any, str] = {}  # lingua Language -> public code
        self.missing: str | None = None  # why detection is unavailable
        self.undetectable: list[str] = []  # served sources lingua does not know: never detected
        self._detector: Any = None
        self._builder: Any = None
        self._lock = threading.Lock()
        if len(self.sources) == 1:
            return  # one source: nothing to choose, nothing to load
        try:
            from lingua import LanguageDetectorBuilder
        except ImportError:
            self.missing = ("language detection needs lingua-language-detector: pip install 'mtadapt[serve]' "
                            "(or pip install lingua-language-detector)")
            return
        for code in self.sources:
            language = _lingua_language(code)
            if language is not None:
                self.known[language] = code
        self.undetectable = [c for c in self.sources if c not in self.known.values()]
        if not self.known:
            self.missing = f"language detection knows none of the served sources ({', '.join(self.sources)})"
        else:
            self._builder = LanguageDetectorBuilder.from_languages(*self.known).with_preloaded_language_models()

    def load(self) -> None:
        """Load lingua's models of every known source (once; a no-op without detection)."""
        with self._lock:
            if self._detector is None and self._builder is not None:
                self._detector = self._builder.build()

    @property
    def available(self) -> bool:
        return self.missing is None

    def detect(self, text: str) -> list[dict[str, Any]]:
        """Candidates for `text`, most likely first (confidence in percent, 2 decimals).

        Raises:
            DetectionUnavailable: lingua is not installed, or knows none of the sources.
        """
        if self.missing is not None:
            raise DetectionUnavailable(self.missing)
        if self._builder is None:
            return [{"confidence": 100.0, "language": self.sources[0]}]
        self.load()
        values = self._detector.compute_language_confidence_values(text)
        found = [{"confidence": round(100 * v.value, 2), "language": self.known[v.language]} for v in values]
        return found or [{"confidence": 0.0, "language": code} for code in self.known.values()]
