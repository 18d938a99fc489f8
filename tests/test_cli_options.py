"""Command-line options built from the settings dataclasses (`mtadapt.cli_options`)."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from mtadapt.cli import BACKTRANSLATION_FLAGS, BACKTRANSLATION_HELPS, NOISE_FLAGS, build_parser
from mtadapt.cli_options import Number, add_dataclass_options, attribute_docs, dataclass_from_args
from mtadapt.settings import BacktranslationConfig, NoiseConfig


def _subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize(("cls", "flags", "helps", "path"), [
    (NoiseConfig, NOISE_FLAGS, {}, ("augment", "noise")),
    (BacktranslationConfig, BACKTRANSLATION_FLAGS, BACKTRANSLATION_HELPS, ("augment", "backtranslate")),
])
def test_every_simple_field_is_an_option_with_its_docstring_help(cls, flags, helps, path):
    """Each option's help is its field's docstring entry, or for a switch that clears a field
    (`--keep-empty`) the text that says what the switch does."""
    parser = _subparser(*path)
    by_dest = {a.dest: a for a in parser._actions}
    docs = {**attribute_docs(cls), **helps}
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

    with pytest.raises(TypeError, match="Settings.safe defaults to True: --unsafe clears it; give its help"):
        add_dataclass_options(argparse.ArgumentParser(), Settings, flags={"safe": "--unsafe"})  # "Stay safe." would be wrong
    parser = argparse.ArgumentParser()
    add_dataclass_options(parser, Settings, flags={"safe": "--unsafe"}, helps={"safe": "take risks"})
    assert dataclass_from_args(Settings, parser.parse_args([])) == Settings()
    assert dataclass_from_args(Settings, parser.parse_args(["--fast", "--unsafe", "--rate", "2"])) == Settings(True, False, 2.0)
    assert attribute_docs(Settings) == {"fast": "Go fast, over two lines.", "safe": "Stay safe."}


def test_positionals_lists_required_flags_groups_and_inherited_docs():
    """What `option(...)` declares: flags, positionals, repeated and nargs lists, required
    fields, a nested settings group, a range; the help of a base class's field comes from its
    own `Attributes:`, `%` shown as written."""
    from mtadapt.cli_options import option

    @dataclasses.dataclass(kw_only=True)
    class Base:
        """Base.

        Attributes:
            adapter: An adapter; repeatable (100% optional).
        """

        adapter: list[str] = option(default_factory=list)

    @dataclasses.dataclass(kw_only=True)
    class Verb(Base):
        """Verb.

        Attributes:
            recipe: The recipe.
            overrides: key=value overrides.
            real: SRC TGT.
            out: Where to write.
            source: Input file.
            noise: Noise.
            beam: Beam size.
        """

        recipe: str | None = option(None, positional=True)
        overrides: list[str] = option(default_factory=list, positional=True)
        real: list[str] = option(nargs="+")
        out: str
        source: str | None = option(None, flags=("-i", "--source"))
        noise: NoiseConfig = option(default_factory=NoiseConfig, group=True, flags={"word_shuffle_distance": "--shuffle"},
                                    ranges={"word_dropout": Number(float, 0, 1, high_open=True)})
        beam: int = option(1, range=Number(int, 1, 64))

    class Raising(argparse.ArgumentParser):
        def error(self, message):
            raise ValueError(message)

    parser = Raising()
    add_dataclass_options(parser, Verb)
    by_dest = {a.dest: a for a in parser._actions}
    assert by_dest["adapter"].help == "An adapter; repeatable (100%% optional)."  # argparse shows %% as %
    assert "100% optional" in parser.format_help()
    assert by_dest["source"].option_strings == ["-i", "--source"] and by_dest["out"].required
    args = parser.parse_args(["r.yaml", "a=1", "b=2", "--real", "s.txt", "t.txt", "--out", "o", "-i", "in.txt",
                              "--adapter", "x", "--adapter", "y", "--shuffle", "2", "--word-dropout", "0.5", "--beam", "4"])
    verb = dataclass_from_args(Verb, args)
    assert verb == Verb(recipe="r.yaml", overrides=["a=1", "b=2"], real=["s.txt", "t.txt"], out="o", source="in.txt",
                        adapter=["x", "y"], noise=NoiseConfig(word_shuffle_distance=2.0, word_dropout=0.5), beam=4)
    bare = dataclass_from_args(Verb, parser.parse_args(["--real", "a.tsv", "--out", "o"]))
    assert (bare.recipe, bare.overrides, bare.adapter, bare.noise, bare.beam) == (None, [], [], NoiseConfig(), 1)
    for argv, message in ((["--real", "a.tsv"], "--out"), (["--out", "o"], "--real"),
                          (["--real", "a", "--out", "o", "--word-dropout", "1"], "must be in [0, 1), got 1"),
                          (["--real", "a", "--out", "o", "--beam", "65"], "must be in [1, 64], got 65")):
        with pytest.raises(ValueError, match=re.escape(message)):
            parser.parse_args(argv)


def test_typed_verbs_check_their_options_before_any_work(tmp_path, capsys):
    """A verb's `__post_init__` checks run when its options are built: one `error:` line naming
    the flag, exit 2, and nothing written."""
    from mtadapt.cli import main

    assert main(["params"]) == 2
    assert re.match(r"error: give --arch NAME \(.*\) or --model M\n$", capsys.readouterr().err)
    out = tmp_path / "mixed.tsv"
    assert main(["augment", "mix", "--real", "a.txt", "--synthetic", "s.tsv", "--output-src", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: --real a.txt: one path must be a .tsv file")
    assert main(["augment", "mix", "--real", "a", "b", "c", "--synthetic", "s.tsv", "--output-src", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: --real a b c: 3 paths; give SRC TGT")
    assert not out.exists()


def test_every_verb_is_a_typed_function_of_its_documented_options():
    """Each leaf verb of the parser is in `cli.VERBS`: a function of one options dataclass that
    documents every field, and each of its flags has help."""
    import inspect
    import typing

    from mtadapt.cli import VERBS

    def leaves(parser, path=()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {path: parser}
        return {leaf: p for name, sub in subs[0].choices.items() for leaf, p in leaves(sub, path + (name,)).items()}

    parsers = leaves(build_parser())
    assert set(parsers) == set(VERBS)
    for verb, (cls, function) in VERBS.items():
        hints = typing.get_type_hints(function)
        assert list(inspect.signature(function).parameters) == ["options"], verb
        assert (hints["options"], hints["return"]) == (cls, int), verb
        undocumented = [f.name for f in dataclasses.fields(cls) if f.name not in attribute_docs(cls)]
        assert not undocumented, f"{cls.__name__}: {undocumented}"
        bare = [a.dest for a in parsers[verb]._actions if a.dest not in ("help", "debug") and not (a.help or "").strip()]
        assert not bare, f"{' '.join(verb)}: no help for {bare}"


# ----------------------------------------------------------------- numeric flags: one check


def _numeric_options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], argparse.Action]]:
    """(verb path, action) of every option in the CLI that takes a number."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _numeric_options(sub, path + (name,))
        elif action.option_strings and (isinstance(action.type, Number) or action.type in (int, float)
                                        or (type(action.default) in (int, float) and action.nargs != 0)):
            out.append((path, action))
    return out


NUMERIC = _numeric_options(build_parser())


def test_every_numeric_flag_parses_with_a_range():
    """Every int/float option of every verb goes through `Number` with a lower bound (grep-proof:
    a plain `type=int` added later fails here)."""
    assert len(NUMERIC) >= 30
    for path, action in NUMERIC:
        assert isinstance(action.type, Number), f"{' '.join(path)} {action.option_strings[0]}: type={action.type}"
        assert action.type.low is not None, f"{' '.join(path)} {action.option_strings[0]}: no lower bound"
        if action.default is not None:  # the default itself is valid
            assert action.type.valid(action.default), (path, action.option_strings, action.default)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("path", "flag"), [(p, a.option_strings[-1]) for p, a in NUMERIC],
                         ids=[f"{' '.join(p)} {a.option_strings[-1]}" for p, a in NUMERIC])
def test_non_finite_values_are_refused_naming_the_flag_and_range(path, flag, value, capsys):
    from mtadapt.cli import main

    with pytest.raises(SystemExit) as info:
        main([*path, f"{flag}={value}"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert re.fullmatch(rf"error: argument {flag}: (must be|expected an? \w+) .+, got '?{value}'?; see mtadapt {' '.join(path)} --help\n", err), err


@pytest.mark.parametrize(("argv", "message"), [
    # issue 29 item 10: each was an internal error, a MemoryError, or silently accepted
    (["augment", "mix", "--real-upsample", "inf"], "argument --real-upsample: must be in [1, 1000], got inf"),
    (["augment", "mix", "--real-upsample", "1e9"], "argument --real-upsample: must be in [1, 1000], got 1e9"),
    (["augment", "mix", "--real-upsample", "nan"], "argument --real-upsample: must be in [1, 1000], got nan"),
    (["augment", "backtranslate", "--temperature", "nan"], "argument --temperature: must be > 0, got nan"),
    (["evaluate", "--n-bootstrap", "100000000"], "argument --n-bootstrap: must be in [0, 10000], got 100000000"),
    (["export", "--calibration-lines", "-5"], "argument --calibration-lines: must be >= 1, got -5"),
    (["export", "--calibration-lines", "0"], "argument --calibration-lines: must be >= 1, got 0"),
    (["augment", "noise", "--shuffle-distance", "nan"], "argument --shuffle-distance: must be >= 0, got nan"),
    (["augment", "noise", "--word-dropout", "1"], "argument --word-dropout: must be in [0, 1), got 1"),
    (["augment", "backtranslate", "--max-length-ratio", "0.5"], "argument --max-length-ratio: must be 0 (off) or >= 1, got 0.5"),
    (["augment", "backtranslate", "--top-p", "0"], "argument --top-p: must be in (0, 1], got 0"),
    (["serve", "--port", "70000"], "argument --port: must be in [0, 65535], got 70000"),
    (["translate", "--beam", "1000000000"], "argument --beam: must be in [1, 64], got 1000000000"),
    (["translate", "--window-lines", "0"], "argument --window-lines: must be >= 1, got 0"),
    (["translate", "--batch-size", "2.5"], "argument --batch-size: expected an integer in [1, 4096], got '2.5'"),
])
def test_bad_numbers_name_the_flag_and_valid_range(argv, message, capsys):
    from mtadapt.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err == f"error: {message}; see mtadapt {' '.join(argv[:-2])} --help\n"  # one line


def test_number_describes_and_checks_its_range():
    assert Number(int, 1)("3") == 3 and Number(float, 0, 1, high_open=True)("0.5") == 0.5
    assert Number(float, 1, off=0)("0") == 0.0 and Number(float).describe() == "finite"
    for number, text in ((Number(int, 1), "0"), (Number(float, 0, low_open=True), "0"), (Number(float), "inf"),
                         (Number(float, 0, 1, high_open=True), "1"), (Number(int, 0, 10), "11")):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"must be {number.describe()}, got {text}")):
            number(text)
    with pytest.raises(TypeError, match="no_such_field"):  # a mistyped range is a bug found at start-up
        add_dataclass_options(argparse.ArgumentParser(), NoiseConfig, ranges={"no_such_field": Number(int, 0)})
