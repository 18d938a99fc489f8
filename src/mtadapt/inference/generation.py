"""Batched, length-sorted generation: the one translation path used by `translate`,
`evaluate`, training-time evaluation, back-translation, `compare` and `serve`.

Semantics of `translate_ids`:

    order = argsort(len(src_ids[i]) for i, descending)      # similar lengths batch together
    for chunk in batches(order, batch_size):
        out[chunk] = generate(pad(src_ids[chunk]), decoder_prompt)  # prompt stripped
    return out                                               # in input order

Sorting by length wastes little compute on padding; the first (longest) batch also shows
at once whether memory suffices.

A source longer than the model's position table (`config.max_position_embeddings`) is cut to
its first `limit - 1` tokens plus its last (`</s>`), with one warning counting such sources and
naming their input lines (`line_numbers`; a file's shards pass them, as the sources arrive
length-sorted); the output length is capped to the table too. Every other sentence is translated as usual.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from mtadapt.errors import MtadaptWarning
from mtadapt.models.languages import PairCodec
from mtadapt.progress import Progress, ProgressMode
from mtadapt.settings import INFERENCE_DTYPES, GenerationConfig


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _cut_at_eos(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    out = []
    for t in ids:
        if t == eos_id:
            break
        if t != pad_id:
            out.append(t)
    return out


def position_limit(model: nn.Module) -> int | None:
    """Most tokens a sequence of `model` may hold (its position table), or None (no limit:
    T5's relative positions, Marian-native's computed sinusoids)."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 1 else None


def truncate_sources(src_ids: list[list[int]], limit: int | None) -> tuple[list[list[int]], list[int]]:
    """Sources cut to `limit` tokens (the first `limit - 1` and the last, `</s>`), and the
    indices of those that were cut."""
    if limit is None:
        return src_ids, []
    cut = [i for i, ids in enumerate(src_ids) if len(ids) > limit]
    if not cut:
        return src_ids, []
    out = list(src_ids)
    for i in cut:
        out[i] = list(src_ids[i][: limit - 1]) + [src_ids[i][-1]]
    return out, cut


def warn_truncated(numbers: Sequence[int], total: int, limit: int, lines: bool = True) -> None:
    """One warning for the `numbers` (1-based input lines, or positions when not `lines`) of
    the sources, out of `total`, that `truncate_sources` cut to `limit` tokens."""
    numbers = sorted(numbers)
    shown = ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")
    where = f"input lines {shown}" if lines else f"sentences {shown}, 1-based"
    warnings.warn(f"{len(numbers)} of {total} sources are longer than the model's {limit} positions and were "
                  f"truncated ({where}); their translations cover only the start", MtadaptWarning, stacklevel=3)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def generate_batch(
    model: nn.Module,
    codec: PairCodec,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    config: GenerationConfig,
    decoder_prompts: torch.Tensor | None = None,
) -> list[list[int]]:
    """Generate for one padded batch; returns target ids without prompt, EOS or padding.

    Args:
        input_ids: (batch, src_len) source ids.
        attention_mask: (batch, src_len), 1 on real tokens.
        decoder_prompts: (batch, prompt_len) per-example decoder prompts (mixed target
            languages); defaults to the codec's prompt for every row.

    Returns:
        batch * num_return_sequences id lists, the outputs of source i at
        [i * n, (i + 1) * n).
    """
    device = _device(model)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    max_new = math.ceil(config.max_length_factor * input_ids.shape[1]) + 5
    limit = position_limit(model)
    sampling = dict(
        do_sample=config.do_sample,
        num_return_sequences=config.num_return_sequences,
    )
    if config.do_sample:
        sampling.update(temperature=config.sampling_temperature, top_k=config.top_k or None, top_p=config.top_p)
    if codec.family.native:  # mtadapt's Marian port: its own search, no decoder prompt
        from mtadapt.models.marian_native.generate import generate

        out = generate(
            model, input_ids, attention_mask, num_beams=config.num_beams, max_new_tokens=max_new,
            length_penalty=config.length_penalty, **sampling,
        )
        prompt_len = 0
    else:
        prompt = decoder_prompts
        if prompt is None:
            prompt = torch.tensor([codec.decoder_prompt()] * input_ids.shape[0], dtype=torch.long)
        prompt_len = prompt.shape[1]
        if limit is not None:  # the decoder's positions run out too (prompt + new tokens)
            max_new = max(1, min(max_new, limit - prompt_len))
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=prompt.to(device),
            num_beams=config.num_beams, max_new_tokens=max_new, length_penalty=config.length_penalty,
            **({"early_stopping": True} if config.num_beams > 1 else {}), **sampling,
        )
    return [_cut_at_eos(row[prompt_len:].tolist(), codec.eos_id, codec.pad_id) for row in out]


def translate_ids(
    model: nn.Module,
    codec: PairCodec,
    src_ids: list[list[int]],
    config: GenerationConfig,
    progress: bool | ProgressMode = False,
    desc: str = "translate",
    decoder_prompts: list[list[int]] | None = None,
    batch_context: Callable[[list[int]], AbstractContextManager] | None = None,
    line_numbers: Sequence[int] | None = None,
) -> list[list[list[int]]]:
    """Translate tokenized sources; returns, per source in input order, its output id lists.

    Args:
        progress: a bar (True / "bar"), a line every 10 s ("log": `--no-progress`), or
            nothing (False / "off"); see `mtadapt.progress`.
        decoder_prompts: per source, its decoder prompt (`PairCodec.decoder_prompt()` of its
            direction: mixed target languages in one batch); all of one length. Default:
            `codec`'s prompt for every source.
        batch_context: `batch_context(chunk)` wraps the generation of the sources at indices
            `chunk` (e.g. per-row adapter routing for exactly those rows).
        line_numbers: per source, its 1-based line in the input, which the truncation
            warning names (default: its 1-based position in `src_ids`).
    """
    limit = position_limit(model)
    src_ids, cut = truncate_sources(src_ids, limit)
    if cut:
        warn_truncated([line_numbers[i] for i in cut] if line_numbers is not None else [i + 1 for i in cut],
                       len(src_ids), limit, lines=line_numbers is not None)
    was_training = model.training
    model.eval()
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]), reverse=True)
    outputs: list[list[list[int]]] = [[] for _ in src_ids]
    n = config.num_return_sequences
    with Progress(len(src_ids), desc, unit="sent", mode=progress) as bar:
        for start in range(0, len(order), config.batch_size):
            chunk = order[start : start + config.batch_size]
            ids, mask = _pad([src_ids[i] for i in chunk], codec.pad_id)
            prompts = None if decoder_prompts is None else torch.tensor([decoder_prompts[i] for i in chunk], dtype=torch.long)
            with batch_context(chunk) if batch_context is not None else nullcontext():
                generated = generate_batch(model, codec, ids, mask, config, prompts)
            for j, i in enumerate(chunk):
                outputs[i] = generated[j * n : (j + 1) * n]
            bar.update(len(chunk))
    model.train(was_training)
    return outputs


def translate(
    model: nn.Module,
    codec: PairCodec,
    texts: list[str],
    config: GenerationConfig | None = None,
    progress: bool | ProgressMode = False,
) -> list[str]:
    """Translate sentences (first output of each); output i translates texts[i]."""
    config = config or GenerationConfig()
    outs = translate_ids(model, codec, codec.encode_sources(texts), config, progress)
    return codec.decode([o[0] for o in outs])
