"""Every method lifts BLEU on the toy task of every family.

A random tiny model is no base for parameter-efficient methods (a rank-8 update of random
weights learns little), so each family's base is first fully fine-tuned for a short while
(dev BLEU ~10-40), saved as a plain model folder, and each method then trains from it for
the same number of steps. Measured on 2 CPU cores (mBART-50, 150 + 150 steps):
base 12.5 -> LoRA 48.1, Houlsby 39.1, Pfeiffer 29.7, prefix 37.4, BitFit 16.1, full 58.3.
On the other families LoRA, Houlsby, Pfeiffer and prefix tuning each train from a base of
that family. Tiny T5 learns the toy task slowest: its base gets 150 steps at 3e-3 and its
adapters 1e-2. From a T5 base trained 300 steps (dev BLEU 42.5) the adapters lifted less
than a point at 3e-3, or fell below the base (Houlsby 39.2, Pfeiffer 39.9 with one thread),
and whether they passed depended on the thread count; all tests here run on one thread.

Prompt tuning steers a model towards a behaviour it already has; it adds no capacity
(Lester et al. 2021). From the undertrained base above it lifts nothing (mBART-50: 12.5 ->
13.3 at lr 3e-3; lengths 1-20, lr up to 3e-2, prefix or suffix: within a point of the
base). Its base is therefore trained on two tasks told apart by a two-word tag in front of
the source, "frau mann" (translate) and "kind baum" (copy the source); the prompt run gets
untagged sources and its two soft tokens learn to stand in for the translate tag. Measured
(300 base steps, then 150 prompt steps at 3e-2; dev BLEU untagged base -> prompt, tagged
base): mBART-50 17.4 -> 30.7 (29.5), M2M100 13.0 -> 39.5 (40.9), NLLB 6.5 -> 68.3 (72.8),
Marian 2.3 -> 89.3 (89.2), T5 13.4 -> 26.0 (26.4).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mtadapt.config import load_recipe
from mtadapt.toy import toy_corpus_dir
from mtadapt.models.tiny import TOY_LANGUAGES
from mtadapt.runs import open_for_inference
from mtadapt.train.loop import train

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "toy.yaml"
STEPS = 150
T5_BASE_STEPS = 150
T5_LR_FACTOR = 3  # tiny T5 (no embedding scale, relative positions) moves slowest: 1e-2 for the adapters

# method -> (settings, learning rate, minimum BLEU gain over the base)
METHODS = {
    "lora": ("{rank: 8, targets: all-linear}", 3e-3, 10.0),
    "houlsby": ("{bottleneck_dim: 16}", 3e-3, 10.0),
    "pfeiffer": ("{bottleneck_dim: 16}", 3e-3, 5.0),
    "prefix": ("{prefix_length: 8}", 3e-3, 5.0),
    "bitfit": ("{}", 3e-3, 1.0),
    "full": ("{}", 1e-3, 10.0),
}


def _languages(family: str) -> list[str]:
    src, tgt = TOY_LANGUAGES[family]
    return [f"data.src_lang={src if src else 'null'}", f"data.tgt_lang={tgt if tgt else 'null'}"]


def _run(tmp: Path, name: str, model: str, family: str, method: str = "full", settings: str = "{}",
         lr: float = 1e-3, steps: int = STEPS, overrides: tuple[str, ...] = ()) -> dict[str, float]:
    config = load_recipe(RECIPE, [
        f"model.name_or_path={model}", f"train.output_dir={tmp / name}", f"train.max_steps={steps}",
        f"train.eval_every={steps}", f"train.save_every={steps}", f"method.name={method}",
        f"method.settings={settings}", f"train.learning_rate={lr}", "data.max_dev_sentences=100",
        *_languages(family), *overrides,
    ])
    return train(config, progress=False).dev_history[-1]


def _save_final(run: Path, folder: Path) -> str:
    """The run's final weights as a plain model folder (the next run's base)."""
    loaded, _ = open_for_inference(run=run, which="final")
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return str(folder)


def _untagged_dev_scores(model: str, family: str) -> dict[str, float]:
    """Dev scores of `model` on the plain toy dev set (no tag in front of the sources)."""
    from mtadapt.data.tasks import load_corpus
    from mtadapt.evaluate.dev import evaluate_dev
    from mtadapt.runs import load_base

    config = load_recipe(RECIPE, [f"model.name_or_path={model}", "data.max_dev_sentences=100", *_languages(family)])
    loaded = load_base(config)
    codec = loaded.codec(config.data.src_lang, config.data.tgt_lang)
    return evaluate_dev(loaded.model.eval(), codec, load_corpus(config, "dev", codec, None), config)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: float reductions (and so these short trainings) then do not depend
    on the machine's core count; T5's margins were seen to flip between 1 and 2 threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """family -> (folder of a partly trained base, its dev scores); built on first use."""
    tmp = tmp_path_factory.mktemp("bases")
    cache: dict[str, tuple[str, dict[str, float]]] = {}

    def get(family: str) -> tuple[str, dict[str, float]]:
        if family not in cache:
            # tiny T5 learns the toy task slowest (dev BLEU ~1 after 150 steps at 1e-3)
            lr, steps = (3e-3, T5_BASE_STEPS) if family == "t5" else (1e-3, STEPS)
            scores = _run(tmp, f"{family}-pre", f"tiny:{family}", family, lr=lr, steps=steps)
            cache[family] = (_save_final(tmp / f"{family}-pre", tmp / f"{family}-base"), scores)
        return cache[family]

    return get


TRANSLATE_TAG, COPY_TAG = "frau mann", "kind baum"
TAGGED_BASE_STEPS = 300


@pytest.fixture(scope="module")
def tagged_bases(tmp_path_factory):
    """family -> (base trained on the tagged translate/copy mixture, its tagged dev scores,
    its scores on untagged dev sources)."""
    tmp = tmp_path_factory.mktemp("tagged")
    toy = toy_corpus_dir()

    def read(split: str) -> list[tuple[str, str]]:
        src, tgt = ((toy / f"{split}.{side}").read_text(encoding="utf-8").splitlines() for side in ("de", "en"))
        return list(zip(src, tgt, strict=True))

    rows = [row for de, en in read("train") for row in ((f"{TRANSLATE_TAG} {de}", en), (f"{COPY_TAG} {de}", de))]
    random.Random(0).shuffle(rows)
    (tmp / "mix.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")
    (tmp / "dev.tsv").write_text("".join(f"{TRANSLATE_TAG} {de}\t{en}\n" for de, en in read("dev")), encoding="utf-8")
    cache: dict[str, tuple[str, dict[str, float], dict[str, float]]] = {}

    def get(family: str) -> tuple[str, dict[str, float], dict[str, float]]:
        if family not in cache:
            lr = 3e-3 if family == "t5" else 1e-3
            # the whole corpus one sorted window (sort_window 100, no share cap): the bases these
            # thresholds were measured on. With windows of 16 batches (what the default share
            # gives this corpus) the T5 base came out weaker at telling its tasks apart and its
            # 2-token prompt reached dev BLEU 15.6 (base 12.6; needed 17.6) instead of 26.0:
            # recorded, not hidden (docs/time-to-quality.md); the other families pass either way
            tagged = _run(tmp, f"{family}-pre", f"tiny:{family}", family, lr=lr, steps=TAGGED_BASE_STEPS,
                          overrides=(f"data.train.paths=[{tmp / 'mix.tsv'}]", f"data.dev.paths=[{tmp / 'dev.tsv'}]",
                                     "data.sort_window=100", "data.sort_window_share=1.0"))
            folder = _save_final(tmp / f"{family}-pre", tmp / f"{family}-base")
            cache[family] = (folder, tagged, _untagged_dev_scores(folder, family))
        return cache[family]

    return get


def _on_worker_of(group: str, *values: str, slow: bool = False):
    """A parameter whose test runs on the pytest-xdist worker of `group` (`--dist loadgroup`),
    so each module-scoped base is trained once per session, not once per worker. `slow`: the
    default suite covers the method on other families; `-m slow` runs it here too."""
    marks = [pytest.mark.xdist_group(group)] + ([pytest.mark.slow] if slow else [])
    return pytest.param(*values, marks=marks)


@pytest.mark.parametrize("method", [_on_worker_of("bases-mbart50", m) for m in METHODS])
def test_each_method_lifts_bleu_on_mbart50(method, bases, tmp_path):
    base, before = bases("mbart50")
    settings, lr, gain = METHODS[method]
    after = _run(tmp_path, method, base, "mbart50", method, settings, lr)
    assert after["bleu"] >= before["bleu"] + gain, f"{method}: dev BLEU {after['bleu']:.1f} vs base {before['bleu']:.1f}"


@pytest.mark.parametrize(("method", "family"), [
    _on_worker_of(f"bases-{f}", m, f, slow=f in ("nllb", "t5"))
    for f in ("m2m100", "nllb", "marian", "t5") for m in ("lora", "houlsby", "pfeiffer", "prefix")
])
def test_adapter_methods_lift_bleu_on_every_family(method, family, bases, tmp_path):
    base, before = bases(family)
    settings, lr, _ = METHODS[method]
    lr = lr * T5_LR_FACTOR if family == "t5" else lr
    after = _run(tmp_path, method, base, family, method, settings, lr)
    assert after["bleu"] >= before["bleu"] + 1.0, f"{family} {method}: dev BLEU {after['bleu']:.1f} vs base {before['bleu']:.1f}"


@pytest.mark.parametrize("family", [
    _on_worker_of(f"tagged-{f}", f, slow=f != "mbart50") for f in ("mbart50", "m2m100", "nllb", "marian", "t5")
])
def test_prompt_tuning_learns_the_task_tag_on_every_family(family, tagged_bases, tmp_path):
    base, tagged, untagged = tagged_bases(family)
    assert tagged["bleu"] >= untagged["bleu"] + 5, f"{family}: the base does not depend on its tag: {tagged} vs {untagged}"
    after = _run(tmp_path, "prompt", base, family, "prompt", "{prompt_length: 2}", lr=3e-2)
    assert after["bleu"] >= untagged["bleu"] + 5.0, f"{family} prompt: dev BLEU {after['bleu']:.1f} vs base {untagged['bleu']:.1f}"
    # and it closes at least half the gap to the tagged base (measured: 93-110% of it)
    halfway = (untagged["bleu"] + tagged["bleu"]) / 2
    assert after["bleu"] >= halfway, f"{family} prompt: dev BLEU {after['bleu']:.1f} vs tagged base {tagged['bleu']:.1f}"
