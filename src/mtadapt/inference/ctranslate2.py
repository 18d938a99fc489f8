"""The CTranslate2 engine: a merged, converted HF model run by `ctranslate2.Translator`, and the
conversion that makes such a folder.

    folder = convert_folder(tmp, merged_model, tokenizer, "nllb", "int8", meta)  # model.bin, vocab, mtadapt.json
    engine = CTranslate2Engine(folder, codec, compute_type="int8")
    outs = engine.translate_ids(codec.encode_sources(texts), GenerationConfig(num_beams=4))

`translate_ids` keeps the PyTorch path's contract and arithmetic (`inference.engine`):

    ids -> tokens by the folder's own vocabulary (row i of the embeddings is token i)
    order = sources by length, longest first; chunks of config.batch_size (or of
            max_batch_tokens padded tokens: batch_type="tokens")
    per chunk: max_new = ceil(factor * longest source) + 5, capped by the position table
               target_prefix = the decoder prompt less its start token (mBART-50, M2M100,
                               NLLB: the target code; T5 and Marian: none; the T5 task
                               prefix is in the source ids already, as PyTorch encodes it)
               translate_batch(beam_size, num_hypotheses, length_penalty | sampling_topk,
                               sampling_temperature, sampling_topp;
                               max_decoding_length = len(prefix) + max_new)
               HF's forced_eos_token_id rule: an output that reaches max_new ends in that token
    -> ids without prefix, </s> or padding, in input order

CTranslate2's loaders (4.8) read the model as older transformers wrote it; three gaps with
transformers 5.x are closed here, through subclasses of its public loader classes:

    mbart50  MBartConfig has no `normalize_before`   -> set it (mBART is pre-norm, with a
                                                        layernorm on the embeddings); the
             MBart50Tokenizer has no bos_token        -> bos and decoder start named from the
                                                        config's ids
    m2m100,  get_vocab() lacks the 100 language codes -> the vocabulary is every id's token,
    mbart50  (m2m100: ids 400..499), and names 2 ids     in id order, up to the embedding rows
             `<unk>` (mbart50)                           (`aligned_vocabulary`)
    marian   the loader drops the last embedding row  -> only when <pad> is that row (as in
             as <pad>; mtadapt's <pad> is id 1           opus-mt); else every row is kept

Bad input is one named error each: `NotACTranslate2FolderError` (no model.bin / config.json),
`ComputeTypeError` (the device lacks it: the supported ones listed), `NotConvertibleError` (a
Marian-native model: `--format bergamot`; an adapter that does not merge: the exportable
methods named), `FolderFingerprintError` (the folder was converted from another base).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from mtadapt.errors import ConfigError, ModelError
from mtadapt.inference.generation import truncate_sources, warn_truncated
from mtadapt.methods.storage import FingerprintMismatchError
from mtadapt.models.languages import PairCodec
from mtadapt.progress import Progress, ProgressMode
from mtadapt.settings import GenerationConfig

QUANTIZATIONS = ("int8", "int8_float32", "int16", "float32", "float16", "bfloat16")
CONVERTIBLE_FAMILIES = ("marian", "mbart50", "m2m100", "nllb", "t5")
EXPORTABLE_METHODS = "lora, full, bitfit"
META_FILE = "mtadapt.json"


class NotACTranslate2FolderError(ModelError):
    """A folder given as a CTranslate2 model holds none."""


class ComputeTypeError(ConfigError):
    """A compute type the device cannot run (or no such type)."""


class NotConvertibleError(ConfigError):
    """A model family or adapter method CTranslate2 cannot run."""


class FolderFingerprintError(FingerprintMismatchError):
    """A CTranslate2 folder converted from another base than the run's."""


def require_ctranslate2(flag: str = "--engine ctranslate2") -> Any:
    """The ctranslate2 module, or a ConfigError saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise ConfigError(f"{flag} needs the ctranslate2 package: pip install 'mtadapt[ctranslate2]'") from None
    return ctranslate2


def supported_compute_types(device: str = "cpu") -> list[str]:
    """What CTranslate2 runs on `device` here (e.g. cpu: int8, int8_float32, int16, float32)."""
    ctranslate2 = require_ctranslate2()
    try:
        return sorted(ctranslate2.get_supported_compute_types(device))
    except (RuntimeError, ValueError):  # no CUDA device / build
        return []


def check_compute_type(compute_type: str, device: str = "cpu") -> None:
    """Raises `ComputeTypeError` unless `device` runs `compute_type`, listing those it runs."""
    supported = supported_compute_types(device)
    if compute_type not in supported:
        shown = ", ".join(supported) or "none (no such device here)"
        raise ComputeTypeError(f"--compute-type {compute_type}: CTranslate2 cannot run it on {device} here; "
                               f"supported on {device}: {shown}")


def check_convertible(loaded: Any) -> None:
    """Refuse what CTranslate2 cannot run: a Marian-native model, a family its converter does
    not take, adapters that do not merge into the weights.

    Raises:
        NotConvertibleError: naming what to use instead.
    """
    from mtadapt.methods.merge import merge_refusal

    if loaded.family.native:
        raise NotConvertibleError(f"{loaded.name_or_path} is a Marian-native (Bergamot) model, whose SSRU decoder "
                                  "CTranslate2 cannot run: use --format bergamot to export it, --engine pytorch to run it")
    if loaded.family.name not in CONVERTIBLE_FAMILIES:
        raise NotConvertibleError(f"CTranslate2 converts the families {', '.join(CONVERTIBLE_FAMILIES)}; "
                                  f"{loaded.name_or_path} is {loaded.family.name}")
    refusal = merge_refusal(loaded.model)
    if refusal is not None:
        raise NotConvertibleError(f"CTranslate2 takes adapters merged into the weights ({EXPORTABLE_METHODS}); {refusal}")


# ---------------------------------------------------------------------------------------
# Conversion.


def aligned_vocabulary(model: nn.Module, tokenizer: Any) -> list[str]:
    """Token of every embedding row, in id order: `tokens[i]` is id i's token.

    Each name is used once, by its first id (the MBart50 tokenizer names ids 3 and 4 both
    `<unk>`; text encodes to 3); later duplicates and ids with no token (rows added to round
    the vocabulary up) get `madeupword<i>`, as fairseq names them, so the vocabulary matches
    the weights row for row.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    tokens: list[str] = []
    seen: set[str] = set()
    for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(rows)))):
        if token is None or token in seen:
            token = f"madeupword{i}"
        seen.add(token)
        tokens.append(token)
    return tokens


def _loader(family: str):
    """A CTranslate2 loader instance for `family` with the transformers-5 gaps closed."""
    from ctranslate2.converters.transformers import BartLoader, M2M100Loader, MarianMTLoader, MBartLoader, T5Loader

    class MBart50Loader(MBartLoader):
        def get_model_spec(self, model):
            model.config.normalize_before = True  # pre-norm layers, as MBartEncoderLayer runs them
            model.config.normalize_embedding = True  # layernorm_embedding
            return super().get_model_spec(model)

        def set_config(self, config, model, tokenizer):
            super().set_config(config, model, tokenizer)
            # MBart50Tokenizer has no bos_token attribute in 5.x, and a config without
            # tokenizer_class reads as mBART-25 (no start token): name both from the config's ids.
            config.bos_token = tokenizer.bos_token or tokenizer.convert_ids_to_tokens(model.config.bos_token_id)
            config.decoder_start_token = tokenizer.convert_ids_to_tokens(model.config.decoder_start_token_id)

        def get_vocabulary(self, model, tokenizer):
            return aligned_vocabulary(model, tokenizer)

    class M2M100AlignedLoader(M2M100Loader):  # M2M100 and NLLB
        def get_vocabulary(self, model, tokenizer):
            return aligned_vocabulary(model, tokenizer)

    class MarianLoader(MarianMTLoader):
        def get_model_spec(self, model):
            if model.config.pad_token_id == model.get_input_embeddings().weight.shape[0] - 1:
                return super().get_model_spec(model)  # opus-mt layout: <pad> is the last row, dropped
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            return BartLoader.get_model_spec(self, model)  # every row kept

        def get_vocabulary(self, model, tokenizer):
            tokens = aligned_vocabulary(model, tokenizer)
            if model.config.pad_token_id == len(tokens) - 1:
                tokens.pop()
            return tokens

    loaders = {"mbart50": MBart50Loader, "m2m100": M2M100AlignedLoader, "nllb": M2M100AlignedLoader,
               "marian": MarianLoader, "t5": T5Loader}
    return loaders[family]()


def convert_to_ctranslate2(model: nn.Module, tokenizer: Any, family: str, out: str | Path,
                           quantization: str | None = None) -> Path:
    """Convert an in-memory plain (merged) HF model with CTranslate2's converter into `out` (new)."""
    from ctranslate2.converters import TransformersConverter

    loader = _loader(family)

    class InMemoryConverter(TransformersConverter):
        def _load(self):
            return loader(model, tokenizer)

    InMemoryConverter(str(getattr(model, "name_or_path", "in-memory"))).convert(str(out), quantization=quantization)
    return Path(out)


def generation_meta(model: nn.Module) -> dict[str, Any]:
    """What the engine needs of the HF model that the converted folder does not keep: the
    decoder start id, HF's forced end token (see the module docstring) and the position table."""
    generation = getattr(model, "generation_config", None)
    limit = getattr(model.config, "max_position_embeddings", None)
    return {"decoder_start_token_id": model.config.decoder_start_token_id,
            "forced_eos_token_id": getattr(generation, "forced_eos_token_id", None),
            "max_position_embeddings": limit if isinstance(limit, int) and limit > 1 else None}


def convert_folder(tmp: Path, merged: nn.Module, tokenizer: Any, family: str, quantization: str,
                   meta: dict[str, Any]) -> None:
    """Fill the new folder `tmp` with a self-contained CTranslate2 model: model.bin and its
    vocabulary, the tokenizer files, and `mtadapt.json` (`meta` plus `generation_meta`)."""
    with tempfile.TemporaryDirectory(dir=tmp.parent) as work:
        # CTranslate2 quantizes from the float32 weights
        converted = convert_to_ctranslate2(merged.float(), tokenizer, family, Path(work) / "model", quantization)
        tokenizer.save_pretrained(tmp)  # before CTranslate2's config.json, which must win
        for path in converted.iterdir():
            path.replace(tmp / path.name)
    meta = {**meta, "family": family, "quantization": quantization, **generation_meta(merged)}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_folder_meta(folder: str | Path) -> dict[str, Any]:
    """The folder's `mtadapt.json` ({} when it has none: converted by other tools).

    Raises:
        NotACTranslate2FolderError: no such folder, or no model.bin / config.json in it.
    """
    folder = Path(folder)
    missing = [name for name in ("model.bin", "config.json") if not (folder / name).is_file()]
    if not folder.is_dir() or missing:
        what = "does not exist" if not folder.exists() else "is not a folder" if not folder.is_dir() \
            else f"has no {' or '.join(missing)}"
        raise NotACTranslate2FolderError(f"{folder} is not a CTranslate2 model folder ({what}); give a folder written by "
                                         "`mtadapt export --format ctranslate2` or ct2-transformers-converter")
    path = folder / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NotACTranslate2FolderError(f"{path} is damaged ({err}); export the folder again") from None


def check_folder_fingerprint(folder: str | Path, meta: dict[str, Any], expected: dict[str, str]) -> None:
    """Raises `FolderFingerprintError` when the folder's base differs from `expected`."""
    stored = meta.get("base_fingerprint")
    if stored != expected:
        raise FolderFingerprintError(
            f"CTranslate2 folder {folder} was converted from base {meta.get('base')!r} with fingerprint {stored}, "
            f"but the run's base has {expected}; export the run again (mtadapt export --format ctranslate2)")


def _folder_vocabulary(folder: Path) -> tuple[list[str], list[str]]:
    """(source, target) vocabularies as CTranslate2 reads them (JSON lists, or .txt lines)."""

    def read(stem: str) -> list[str] | None:
        if (folder / f"{stem}.json").is_file():
            return json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
        if (folder / f"{stem}.txt").is_file():
            return (folder / f"{stem}.txt").read_text(encoding="utf-8").split("\n")[:-1]
        return None

    shared = read("shared_vocabulary")
    source, target = read("source_vocabulary"), read("target_vocabulary")
    if shared is None and (source is None or target is None):
        raise NotACTranslate2FolderError(f"{folder} has no vocabulary (shared_vocabulary.json or source_/target_vocabulary)")
    return (shared, shared) if shared is not None else (source, target)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# The engine.


def length_sorted_chunks(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None) -> list[list[int]]:
    """Indices by length, longest first (ties in input order), cut into chunks of `batch_size`,
    or, with `max_batch_tokens`, of at most that many padded tokens (chunk size x its longest)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    if max_batch_tokens is None:
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    chunks: list[list[int]] = []
    for i in order:  # the first of a chunk is its longest
        if chunks and (len(chunks[-1]) + 1) * lengths[chunks[-1][0]] <= max_batch_tokens:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


class CTranslate2Engine:
    """A CTranslate2 folder as an `Engine` (see the module docstring).

    Args:
        folder: A CTranslate2 model folder (model.bin, its vocabulary; mtadapt.json when
            mtadapt wrote it: the base fingerprint, the decoder start, the position table).
        codec: The direction, tokenized as the PyTorch path tokenizes it.
        compute_type: int8, int8_float32, int16, float32 (CPU); float16, bfloat16 (CUDA).
        device: "cpu" or "cuda".
        device_index: Which GPU (a rank's own under torchrun).
        intra_threads: Threads per translation (0: CTranslate2's default, 4 or the cores).
        max_batch_tokens: Chunks of at most this many padded source tokens (batch_type
            "tokens") instead of `config.batch_size` sentences.
        model_name: What it was opened as (default: the base named in mtadapt.json, else the folder).

    Raises:
        NotACTranslate2FolderError, ComputeTypeError: see the module docstring.
    """

    name = "ctranslate2"

    def __init__(self, folder: str | Path, codec: PairCodec, compute_type: str = "int8", *, device: str = "cpu",
                 device_index: int = 0, intra_threads: int = 0, max_batch_tokens: int | None = None, model_name: str | None = None):
        ctranslate2 = require_ctranslate2()
        self.folder = Path(folder)
        self.meta = read_folder_meta(self.folder)
        check_compute_type(compute_type, device)
        self.codec = codec
        self.precision = compute_type
        self.model_name = model_name or str(self.meta.get("base") or self.folder)
        self.max_batch_tokens = max_batch_tokens
        source, target = _folder_vocabulary(self.folder)
        self._source_tokens = source
        self._target_ids = {token: i for i, token in enumerate(target)}
        self._options = dict(device=device, device_index=device_index, compute_type=compute_type,
                             intra_threads=intra_threads)
        self._translator = ctranslate2.Translator(str(self.folder), **self._options)
        self._seed: int | None = None  # to apply before the next sampling chunk

    @property
    def fingerprint(self) -> dict[str, str]:
        return dict(self.meta.get("base_fingerprint") or {})

    @property
    def position_limit(self) -> int | None:
        return self.meta.get("max_position_embeddings")

    @contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        """Sampling inside draws from a generator seeded with `seed`.

        CTranslate2 seeds each worker thread's generator once, at its first draw
        (`static thread_local std::mt19937 generator(get_random_seed())` in its random.cc), so
        `set_random_seed` alone reaches only threads that have not sampled yet. The first
        sampling call inside therefore reopens the translator (new threads) after setting the
        seed; greedy and beam search, which draw nothing, keep it.
        """
        self._seed = seed
        try:
            yield
        finally:
            self._seed = None

    def _reseed(self) -> None:
        ctranslate2 = require_ctranslate2()
        ctranslate2.set_random_seed(self._seed)
        self._translator = None  # its threads end before the new ones start (one model in memory)
        self._translator = ctranslate2.Translator(str(self.folder), **self._options)
        self._seed = None

    def _prefix(self, prompt: list[int]) -> list[str]:
        """The target prefix of a decoder prompt: CTranslate2 starts the decoder itself."""
        start = self.meta.get("decoder_start_token_id", self.codec.decoder_start_token_id)
        rest = prompt[1:] if prompt and prompt[0] == start else prompt
        return [self._source_tokens[i] for i in rest]

    def translate_ids(self, src_ids: list[list[int]], config: GenerationConfig, *,
                      decoder_prompts: list[list[int]] | None = None, line_numbers: Sequence[int] | None = None,
                      progress: bool | ProgressMode = False, desc: str = "translate") -> list[list[list[int]]]:
        limit = self.position_limit
        src_ids, cut = truncate_sources([list(s) for s in src_ids], limit)
        if cut:
            warn_truncated([line_numbers[i] for i in cut] if line_numbers is not None else [i + 1 for i in cut],
                           len(src_ids), limit, lines=line_numbers is not None)
        default_prompt = self.codec.decoder_prompt()
        outputs: list[list[list[int]]] = [[] for _ in src_ids]
        with Progress(len(src_ids), desc, unit="sent", mode=progress) as bar:
            for chunk in length_sorted_chunks([len(s) for s in src_ids], config.batch_size, self.max_batch_tokens):
                prompts = [decoder_prompts[i] if decoder_prompts is not None else default_prompt for i in chunk]
                generated = self._translate_chunk([src_ids[i] for i in chunk], prompts, config, limit)
                for i, out in zip(chunk, generated):
                    outputs[i] = out
                bar.update(len(chunk))
        return outputs

    def _translate_chunk(self, src_ids: list[list[int]], prompts: list[list[int]], config: GenerationConfig,
                         limit: int | None) -> list[list[list[int]]]:
        """One length-sorted chunk, as `generation.generate_batch` decodes one padded batch."""
        n = config.num_return_sequences
        max_new = math.ceil(config.max_length_factor * max(len(s) for s in src_ids)) + 5
        prompt_len = len(prompts[0])
        if limit is not None:  # the decoder's positions run out too (prompt + new tokens)
            max_new = max(1, min(max_new, limit - prompt_len))
        tokens = [[self._source_tokens[i] for i in ids] for ids in src_ids]
        prefixes = [self._prefix(p) for p in prompts]
        options: dict[str, Any] = dict(max_decoding_length=len(prefixes[0]) + max_new, min_decoding_length=0,
                                       max_input_length=0, batch_type="tokens",
                                       max_batch_size=self.max_batch_tokens or 0)
        if config.do_sample:  # n draws per source: the source repeated n times, one hypothesis each
            if self._seed is not None:
                self._reseed()
            tokens = [t for t in tokens for _ in range(n)]
            prefixes = [p for p in prefixes for _ in range(n)]
            options.update(beam_size=1, num_hypotheses=1, sampling_topk=config.top_k or 0,
                           sampling_topp=config.top_p, sampling_temperature=config.sampling_temperature)
        else:
            options.update(beam_size=config.num_beams, num_hypotheses=n, length_penalty=config.length_penalty)
        results = self._translator.translate_batch(tokens, target_prefix=prefixes if any(prefixes) else None, **options)
        # n hypotheses per result (beam), or one per repeated source (sampling): n per source either way
        ids = [self._ids(h[len(prefix):], max_new) for r, prefix in zip(results, prefixes) for h in r.hypotheses]
        return [ids[j * n : (j + 1) * n] for j in range(len(src_ids))]

    def _ids(self, tokens: list[str], max_new: int) -> list[int]:
        """Output ids of CTranslate2's tokens; cut at </s> and padding as the PyTorch path cuts."""
        ids = [self._target_ids[t] for t in tokens]
        forced = self.meta.get("forced_eos_token_id")
        if forced is not None and len(ids) >= max_new:  # HF puts its forced end token at the last step
            ids = ids[: max_new - 1] + [forced]
        out = []
        for t in ids:
            if t == self.codec.eos_id:
                break
            if t != self.codec.pad_id:
                out.append(t)
        return out
