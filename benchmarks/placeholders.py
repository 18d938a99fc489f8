"""Placeholder survival: real gettext strings translated with placeholder protection on and off.

Strings: every msgid and msgid_plural holding a placeholder (`find_placeholders`: printf,
brace, ICU, entities, inline tags) in the pt_BR catalogs an installed package ships (default:
django's, `pip install django`), or in the catalogs given with --catalog. Each string is
translated by --model (default bergamot:en-pt, greedy), once as it is and once masked and
restored (`mtadapt.data.placeholders`), the two runs interleaved in chunks so both see the same
machine state.

    survived(string) = |multiset(placeholders of source) ∩ multiset(placeholders of output)|
    survival         = sum survived / sum placeholders of the sources
    intact           = strings whose output holds exactly the source's placeholders
    warned           = protected strings with a placeholder problem reported
    silent           = protected strings not intact and not warned about (must be 0)

    .venv/bin/python benchmarks/placeholders.py [--model bergamot:en-pt] [--strings 0 (all)] [--catalog F.po ...]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import time
from collections import Counter

import polib
import torch

from mtadapt.data.placeholders import find_placeholders, translate_protected, usable_styles
from mtadapt.inference.generation import GenerationConfig, translate
from mtadapt.inference.precision import describe_machine
from mtadapt.runs import open_for_inference


def installed_catalogs(package: str = "django", language: str = "pt_BR") -> list[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = spec.submodule_search_locations[0]
    return sorted(glob.glob(os.path.join(root, "**", "locale", language, "LC_MESSAGES", "*.po"), recursive=True))


def strings_with_placeholders(paths: list[str]) -> list[str]:
    """Distinct msgids/msgid_plurals with at least one placeholder, in catalog order."""
    found: dict[str, None] = {}
    for path in paths:
        for entry in polib.pofile(path):
            for text in (entry.msgid, entry.msgid_plural):
                if text and find_placeholders(text):
                    found.setdefault(text.strip())
    return list(found)


def survived(source: str, output: str) -> int:
    return sum((Counter(find_placeholders(source)) & Counter(find_placeholders(output))).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bergamot:en-pt", help="a model mtadapt loads (bergamot:en-pt, tiny:m2m100 ...)")
    parser.add_argument("--src-lang", default=None, help="source language code, for multilingual models")
    parser.add_argument("--tgt-lang", default=None, help="target language code, for multilingual models")
    parser.add_argument("--catalog", nargs="*", default=None, help=".po files (default: django's pt_BR catalogs)")
    parser.add_argument("--strings", type=int, default=0, help="use the first N strings (0: all)")
    parser.add_argument("--chunk", type=int, default=16, help="strings per batch; the two runs alternate by chunk")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    catalogs = args.catalog if args.catalog is not None else installed_catalogs()
    if not catalogs:
        parser.error("no catalog: pip install django (its pt_BR catalogs are the default), or give --catalog FILE.po")
    strings = strings_with_placeholders(catalogs)
    if args.strings:
        strings = strings[:args.strings]
    if not strings:
        parser.error(f"no string with a placeholder in {', '.join(catalogs)}")

    loaded, codec = open_for_inference(model=args.model, src_lang=args.src_lang, tgt_lang=args.tgt_lang)
    loaded.model.eval()
    config = GenerationConfig(num_beams=1)
    styles = usable_styles(lambda text: codec.decode(codec.encode_targets([text]))[0])

    def model(texts: list[str]) -> list[str]:
        return translate(loaded.model, codec, texts, config)

    plain: list[str] = []
    protected: list[tuple[str, list]] = []
    seconds = {"off": 0.0, "on": 0.0}
    for start in range(0, len(strings), args.chunk):
        chunk = strings[start:start + args.chunk]
        t0 = time.perf_counter()
        plain += model(chunk)
        t1 = time.perf_counter()
        protected += translate_protected(model, chunk, styles)
        seconds["off"] += t1 - t0
        seconds["on"] += time.perf_counter() - t1

    total = sum(len(find_placeholders(s)) for s in strings)
    rows = {}
    print("| protection | strings | placeholders | survived | survival | strings intact | warned | silent | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, outputs, problems in (("off", plain, [[] for _ in plain]), ("on", [o for o, _ in protected], [p for _, p in protected])):
        kept = sum(survived(s, o) for s, o in zip(strings, outputs))
        intact = [Counter(find_placeholders(s)) == Counter(find_placeholders(o)) for s, o in zip(strings, outputs)]
        warned = sum(bool(p) for p in problems)
        silent = sum(not ok and not p for ok, p in zip(intact, problems)) if name == "on" else None
        rows[name] = (kept / total, sum(intact), warned, silent)
        print(f"| {name} | {len(strings)} | {total} | {kept} | {100 * kept / total:.1f}% | {sum(intact)} | "
              f"{warned if name == 'on' else '-'} | {silent if silent is not None else '-'} | {seconds[name]:.1f} |")
    print(f"catalogs: {len(catalogs)} under {os.path.commonpath([os.path.abspath(c) for c in catalogs])}; "
          f"model {args.model}, greedy; mask style {styles[0].name}")
    on, off = rows["on"][0], rows["off"][0]
    print(f"survival protected/unprotected: {on / off:.2f}x ({100 * on:.1f}% vs {100 * off:.1f}%)" if off
          else f"survival protected/unprotected: inf ({100 * on:.1f}% vs 0.0%)")
    print(f"machine: {describe_machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
