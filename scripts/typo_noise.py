"""Typo and casing noise on a text file, one line in, one line out (issue 27, item 4).

The robustness test of mozilla/translations' students: a copy of the test sources with the
typing errors and casing real users send, made by the `typo` package that OpusTrainer's
typo modifier uses, plus OpusTrainer-style UPPER and Title casing of whole lines. The same
script noises a fraction of back-translated training sources for robustness training.

Per line, chosen by a generator seeded with (seed, line number), so a rerun writes the same file:
- with probability `--fraction` the line is noised at all;
- a noised line gets one typo in each word of letters (3 or more) with probability
  `--word-prob`, and at least one such word gets one when the line has any: a swapped pair,
  a missing, an extra or a keyboard-neighbour letter, or a doubled letter;
- then it is UPPER-cased with probability `--upper`, else Title-Cased with probability `--title`.
Tokens with digits, `%`, `{`, `}`, `<`, `>`, `&` or `_` (placeholders and markup in UI strings)
are never changed, so a reference stays reachable.

    python scripts/typo_noise.py --input data/ui-pt-en/test.pt --output data/ui-pt-en/test-typo.pt
    python scripts/typo_noise.py --input bt-beam.pt --output bt-typo.pt --fraction 0.2 --seed 1
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from typo import StrErrer

# a word typo may touch: letters only, three or more (short function words stay readable)
WORD = re.compile(r"^[^\W\d_]{3,}$")
KINDS = ("char_swap", "missing_char", "extra_char", "nearby_char", "repeated_char")


def noise_line(line: str, rng: random.Random, word_prob: float, upper: float, title: float) -> str:
    """One noised line (whitespace between tokens kept as it was)."""
    parts = re.split(r"(\s+)", line)  # tokens at even indices, their separators at odd ones
    words = [i for i in range(0, len(parts), 2) if WORD.match(parts[i])]
    if words:
        chosen = [i for i in words if rng.random() < word_prob] or [rng.choice(words)]
        for i in chosen:
            kind = rng.choice(KINDS)
            # StrErrer seeds Python's global generator; the seed comes from ours, so the file
            # does not depend on anything else drawing from it
            errer = StrErrer(parts[i], seed=rng.getrandbits(32))
            parts[i] = getattr(errer, kind)().result
    out = "".join(parts)
    draw = rng.random()
    if draw < upper:
        out = out.upper()
    elif draw < upper + title:
        out = " ".join(w[:1].upper() + w[1:] if WORD.match(w) else w for w in out.split(" "))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="text file, one sentence a line")
    parser.add_argument("--output", type=Path, required=True, help="written atomically, same line count")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of lines noised at all (default 1.0)")
    parser.add_argument("--word-prob", type=float, default=0.15, help="typo probability per word of letters (default 0.15)")
    parser.add_argument("--upper", type=float, default=0.1, help="share of noised lines UPPER-cased (default 0.1)")
    parser.add_argument("--title", type=float, default=0.1, help="share of noised lines Title-Cased (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("fraction", "word_prob", "upper", "title"):
        value = getattr(args, flag)
        if not 0.0 <= value <= 1.0:
            parser.error(f"--{flag.replace('_', '-')} {value}: must be in [0, 1]")
    if args.upper + args.title > 1.0:
        parser.error(f"--upper {args.upper} + --title {args.title} exceed 1")
    if not args.input.is_file():
        parser.error(f"--input {args.input}: no such file")
    lines = args.input.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out, noised = [], 0
    for n, line in enumerate(lines):
        rng = random.Random(f"{args.seed}:{n}")
        if rng.random() < args.fraction:
            new = noise_line(line, rng, args.word_prob, args.upper, args.title)
            noised += new != line
            line = new
        out.append(line)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in out), encoding="utf-8")
    tmp.replace(args.output)
    print(f"{args.output}: {len(out)} lines, {noised} changed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
