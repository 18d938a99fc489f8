"""Command-line options built from the settings dataclasses (`mtadapt.cli_options`)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from mtadapt.cli import BACKTRANSLATION_FLAGS, NOISE_FLAGS, build_parser
from mtadapt.cli_options import add_dataclass_options, attribute_docs, dataclass_from_args
from mtadapt.settings import BacktranslationConfig, NoiseConfig


def _subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize(("cls", "flags", "path"), [
    (NoiseConfig, NOISE_FLAGS, ("augment", "noise")),
    (BacktranslationConfig, BACKTRANSLATION_FLAGS, ("augment", "backtranslate")),
])
def test_every_simple_field_is_an_option_with_its_docstring_help(cls, flags, path):
    parser = _subparser(*path)
    by_dest = {a.dest: a for a in parser._actions}
    docs = attribute_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name == "noise":  # a nested config: no option
            assert "noise" not in by_dest
            continue
        action = by_dest[f.name]
        assert action.option_strings == [flags.get(f.name, "--" + f.name.replace("_", "-"))]
        assert action.help.startswith(docs[f.name][:20])


def test_defaults_round_trip_and_flags_set_values():
    parser = _subparser("augment", "backtranslate")
    args = parser.parse_args(["--input", "x", "--output", "y.tsv"])
    assert dataclass_from_args(BacktranslationConfig, args) == BacktranslationConfig()
    args = parser.parse_args(["--input", "x", "--output", "y.tsv", "--beam", "3", "--mode", "sample", "--keep-copies",
                              "--temperature", "0.5", "--tag", "[BT]"])
    config = dataclass_from_args(BacktranslationConfig, args)
    assert (config.num_beams, config.mode, config.drop_copies, config.drop_empty) == (3, "sample", False, True)
    assert (config.sampling_temperature, config.tag) == (0.5, "[BT]")
    with pytest.raises(SystemExit):  # a Literal field only takes its choices
        parser.parse_args(["--input", "x", "--output", "y.tsv", "--mode", "nucleus"])


def test_bool_fields_switch_away_from_their_default():
    @dataclasses.dataclass
    class Settings:
        """Test settings.

        Attributes:
            fast: Go fast,
                over two lines.
            safe: Stay safe.
        """

        fast: bool = False
        safe: bool = True
        rate: float | None = None

    parser = argparse.ArgumentParser()
    add_dataclass_options(parser, Settings, flags={"safe": "--unsafe"})
    assert dataclass_from_args(Settings, parser.parse_args([])) == Settings()
    assert dataclass_from_args(Settings, parser.parse_args(["--fast", "--unsafe", "--rate", "2"])) == Settings(True, False, 2.0)
    assert attribute_docs(Settings) == {"fast": "Go fast, over two lines.", "safe": "Stay safe."}
