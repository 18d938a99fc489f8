"""Language handling per family on the tiny models: where codes, tags and prefixes go in
sources and labels, that generation really starts with the target code (also when the
model's generation_config has no `forced_bos_token_id`, or a wrong one), per-row target
codes in one batch, unknown codes, tokenizer round trips, and family detection."""

from __future__ import annotations

import pytest
import torch

from mtadapt.inference.generation import GenerationConfig, _pad, generate_batch
from mtadapt.models.families import FAMILIES, detect_family
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model
from mtadapt.models.tiny import TOY_LANGUAGES

CODE_FAMILIES = ["mbart50", "m2m100", "nllb"]
# A second target language per family, in its own spelling.
OTHER_TARGET = {"mbart50": "fr_XX", "m2m100": "fr", "nllb": "fra_Latn"}
SOURCES = ["jeder grosse auto folgt dieser vogel", "dieser katze mag ein gruene katze", "ein vogel"]


@pytest.fixture(scope="module")
def loaded():
    cache: dict = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_model(f"tiny:{family}")
            cache[family].model.eval()
        return cache[family]

    return get


def toy_codec(loaded_model, tgt_lang: str | None = None) -> PairCodec:
    src, tgt = TOY_LANGUAGES[loaded_model.family.name]
    return PairCodec(loaded_model.family, loaded_model.tokenizer, src, tgt_lang or tgt, loaded_model.decoder_start_token_id)


def token_id(tokenizer, family: str, code: str) -> int:
    token = f"__{code}__" if family == "m2m100" else code
    return int(tokenizer.convert_tokens_to_ids(token))


def raw_generate(model, codec, sources: list[str], decoder_prompts: torch.Tensor | None = None) -> torch.Tensor:
    """Run the library's generate_batch and return what `model.generate` itself produced."""
    seen = []
    original = model.generate

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out)
        return out

    model.generate = spy
    try:
        ids, mask = _pad(codec.encode_sources(sources), codec.pad_id)
        generate_batch(model, codec, ids, mask, GenerationConfig(max_length_factor=0.5), decoder_prompts)
    finally:
        del model.generate
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("family", CODE_FAMILIES)
def test_generation_starts_with_target_code(loaded, family):
    lm = loaded(family)
    codec = toy_codec(lm)
    tgt_id = token_id(lm.tokenizer, family, TOY_LANGUAGES[family][1])
    assert lm.model.generation_config.forced_bos_token_id is None  # nothing forces it but our prompt
    out = raw_generate(lm.model, codec, SOURCES)
    assert out.shape[0] == len(SOURCES) and out.shape[1] > 2
    assert out[:, 0].tolist() == [lm.decoder_start_token_id] * len(SOURCES)
    assert out[:, 1].tolist() == [tgt_id] * len(SOURCES)


@pytest.mark.parametrize("family", CODE_FAMILIES)
def test_explicit_target_code_wins_over_saved_forced_bos(loaded, family):
    lm = loaded(family)
    codec = toy_codec(lm)
    tgt_id = token_id(lm.tokenizer, family, TOY_LANGUAGES[family][1])
    wrong = token_id(lm.tokenizer, family, OTHER_TARGET[family])
    lm.model.generation_config.forced_bos_token_id = wrong  # a stale saved generation config
    try:
        out = raw_generate(lm.model, codec, SOURCES)
    finally:
        lm.model.generation_config.forced_bos_token_id = None
    assert out[:, 1].tolist() == [tgt_id] * len(SOURCES)


@pytest.mark.parametrize("family", CODE_FAMILIES)
def test_mixed_targets_in_one_batch(loaded, family):
    lm = loaded(family)
    codec = toy_codec(lm)
    first = token_id(lm.tokenizer, family, TOY_LANGUAGES[family][1])
    second = token_id(lm.tokenizer, family, OTHER_TARGET[family])
    assert first != second
    start = lm.decoder_start_token_id
    prompts = torch.tensor([[start, first], [start, second], [start, first]])
    out = raw_generate(lm.model, codec, SOURCES, prompts)
    assert out[:, :2].tolist() == prompts.tolist()
    # And the codec of the other direction builds exactly that second prompt.
    assert toy_codec(lm, OTHER_TARGET[family]).decoder_prompt() == [start, second]


@pytest.mark.parametrize("family", CODE_FAMILIES)
def test_sources_and_labels_carry_language_codes(loaded, family):
    lm = loaded(family)
    codec = toy_codec(lm)
    src_code, tgt_code = TOY_LANGUAGES[family]
    src = codec.encode_sources(SOURCES)
    labels = codec.encode_targets(["every big car follows this bird"])
    eos = lm.tokenizer.eos_token_id
    for ids, text in zip(src, SOURCES):
        assert ids[0] == token_id(lm.tokenizer, family, src_code) and ids[-1] == eos
        assert lm.tokenizer.decode(ids[1:-1]) == text
    assert labels[0][0] == token_id(lm.tokenizer, family, tgt_code) and labels[0][-1] == eos
    assert codec.decoder_prompt() == [lm.decoder_start_token_id, labels[0][0]]


def test_t5_uses_task_prefix(loaded):
    lm = loaded("t5")
    codec = toy_codec(lm)
    ids = codec.encode_sources(["ein vogel"])[0]
    assert lm.tokenizer.decode(ids, skip_special_tokens=True) == "translate German to English: ein vogel"
    label = codec.encode_targets(["a bird"])[0]
    assert lm.tokenizer.decode(label, skip_special_tokens=True) == "a bird" and label[-1] == lm.tokenizer.eos_token_id
    assert codec.decoder_prompt() == [lm.decoder_start_token_id]


def test_marian_is_plain(loaded):
    lm = loaded("marian")
    codec = toy_codec(lm)
    ids = codec.encode_sources(["ein vogel"])[0]
    assert ids == lm.tokenizer("ein vogel")["input_ids"] and ids[-1] == lm.tokenizer.eos_token_id
    assert lm.tokenizer.decode(ids, skip_special_tokens=True) == "ein vogel"
    assert codec.decoder_prompt() == [lm.decoder_start_token_id]


@pytest.mark.parametrize("family,bad", [("mbart50", "xx_YY"), ("m2m100", "xx"), ("nllb", "xxx_Latn"), ("t5", "xx")])
def test_unknown_language_code_lists_known_ones(loaded, family, bad):
    lm = loaded(family)
    src, tgt = TOY_LANGUAGES[family]
    with pytest.raises(ValueError, match=rf"unknown source language code '{bad}'.*it knows: .*\b{src}\b"):
        PairCodec(lm.family, lm.tokenizer, bad, tgt, lm.decoder_start_token_id)
    with pytest.raises(ValueError, match=rf"unknown target language code '{bad}'.*it knows: .*\b{tgt}\b"):
        PairCodec(lm.family, lm.tokenizer, src, bad, lm.decoder_start_token_id)


@pytest.mark.parametrize("family", CODE_FAMILIES)
def test_code_families_need_codes(loaded, family):
    lm = loaded(family)
    with pytest.raises(ValueError, match="needs a source language code; valid codes:"):
        PairCodec(lm.family, lm.tokenizer, None, TOY_LANGUAGES[family][1])


@pytest.mark.parametrize("family", list(TOY_LANGUAGES))
def test_tokenizer_round_trip(loaded, family, toy_dir):
    lm = loaded(family)
    codec = toy_codec(lm)
    for side in ("en", "de"):
        texts = (toy_dir / f"test.{side}").read_text(encoding="utf-8").splitlines()
        assert codec.decode(codec.encode_targets(texts)) == texts


def test_detect_family_by_tokenizer_class(loaded):
    assert detect_family("m2m_100", "NllbTokenizerFast").name == "nllb"
    assert detect_family("m2m_100", "NllbTokenizer").name == "nllb"
    assert detect_family("m2m_100", "M2M100Tokenizer").name == "m2m100"
    assert detect_family("m2m_100").name == "m2m100"
    assert detect_family("mbart").name == "mbart50"
    assert detect_family("mt5").name == "t5"
    # The tiny NLLB and M2M100 share model_type m2m_100; loading tells them apart.
    assert loaded("nllb").model.config.model_type == loaded("m2m100").model.config.model_type == "m2m_100"
    assert loaded("nllb").family is FAMILIES["nllb"] and loaded("m2m100").family is FAMILIES["m2m100"]
    with pytest.raises(ValueError, match="set `model.family`"):
        detect_family("gpt2")


def test_tiny_cache_is_rebuilt_when_its_builder_changes(tmp_path, monkeypatch):
    """A tiny model cached by an older builder is not reused: the cache folder carries a stamp
    of the builder's code and library versions (a stale tiny:m2m100, built before its
    LayerDrop fix, had trained differently)."""
    from mtadapt.models import loading, tiny

    builds = []

    def fake_build(family, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)  # replace_folder hands over an empty folder
        (out_dir / "config.json").write_text("{}", encoding="utf-8")
        builds.append(out_dir)

    monkeypatch.setattr(tiny, "build_tiny", fake_build)
    monkeypatch.setenv("MTADAPT_CACHE", str(tmp_path))
    (tmp_path / "tiny" / "m2m100").mkdir(parents=True)  # the old unstamped layout is ignored
    (tmp_path / "tiny" / "m2m100" / "config.json").write_text("{}", encoding="utf-8")
    first = loading.tiny_model_path("m2m100")
    assert first.name == f"m2m100-{loading._tiny_build_stamp()}" and len(builds) == 1
    assert loading.tiny_model_path("m2m100") == first and len(builds) == 1  # built once
    monkeypatch.setattr(loading, "_tiny_build_stamp", lambda: "changed")
    assert loading.tiny_model_path("m2m100") == tmp_path / "tiny" / "m2m100-changed" and len(builds) == 2


def test_one_language_table_and_one_code_normaliser():
    """models.codes: the names T5's prefixes and the server use, and the short codes people type."""
    from mtadapt.models.codes import LANGUAGE_NAMES, corpus_suffix, language_name, public_code, public_codes
    from mtadapt.models.families import T5_LANGUAGE_NAMES

    assert [public_code(c) for c in ("de_DE", "en_XX", "__de__", "deu_Latn", "pt", None)] == ["de", "en", "de", "deu", "pt", ""]
    assert public_codes(["zho_Hans", "zho_Hant", "deu_Latn"]) == {"zho_Hans": "zho_Hans", "zho_Hant": "zho_Hant", "deu_Latn": "deu"}
    assert [language_name(c) for c in ("pt_XX", "__fr__", "deu_Latn", "xx")] == ["Portuguese", "French", "German", "xx"]
    assert [corpus_suffix(c) for c in ("de_DE", "deu_Latn", "de", None)] == ["de", "deu_Latn", "de", "src"]
    assert all(T5_LANGUAGE_NAMES[c] == LANGUAGE_NAMES[c] for c in T5_LANGUAGE_NAMES)
    assert list(T5_LANGUAGE_NAMES)[:3] == ["en", "de", "fr"]  # tiny T5's tokenizer text is built in this order
