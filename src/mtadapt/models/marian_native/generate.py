"""Batched greedy and beam search for `MarianNativeModel`; `generate` is the entry point.

Both encode once, compute each decoder layer's cross-attention keys/values once
(`MarianDecoder.init_cache`) and then run one decoder step per output position, carrying the
SSRU cell (or the self-attention keys/values) in the cache: no step recomputes the prefix.

Per-sentence length cap: max_len[b] = ceil(source_length[b] * max_length_factor), further
capped at `max_new_tokens`. It depends only on the sentence itself, so a sentence translates
the same alone or in any batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mtadapt.models import LABEL_PAD_ID

from .binary import LexicalShortlist
from .model import LayerCache, MarianNativeModel, reorder_cache


class ShortlistOutput:
    """The output layer restricted to the batch's shortlist candidates, masked per sentence.

    With ids (U,) the union of all sentences' candidates and allowed[b, u] = ids[u] is a
    candidate of sentence b:
        logits[b, j, u] = hidden[b, j] . Wemb[ids[u]] + bias[ids[u]]   if allowed[b, u] else -inf
    i.e. the full-vocabulary logits at those ids. One (U, D) matmul serves the whole batch
    (per-sentence matrices would read more weights than the full vocabulary), while the
    mask keeps each sentence's result independent of its batch-mates. The mask is applied as
    an additive (B, U) bias of 0 / -inf made once per batch: one add per step instead of a
    negation and a broadcast masked_fill (together ~4% of int8 greedy decoding).
    """

    def __init__(self, model: MarianNativeModel, shortlist: LexicalShortlist, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor):
        device = input_ids.device
        candidates = [shortlist.candidates(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask)]
        union = np.unique(np.concatenate(candidates))
        allowed = np.zeros((len(candidates), len(union)), dtype=bool)
        for b, c in enumerate(candidates):
            allowed[b, np.searchsorted(union, c)] = True
        self.ids = torch.from_numpy(union).to(device)  # (U,)
        # 0 where allowed, -inf elsewhere: (B, U)
        self.blocked = torch.zeros(allowed.shape, device=device).masked_fill_(~torch.from_numpy(allowed).to(device),
                                                                              float("-inf"))
        # int8 models (`int8.to_int8`) score the same rows with their int8 output layer
        self.int8 = getattr(model, "int8_output", None)
        self.packed = None if self.int8 is None else self.int8.rows(self.ids)
        self.weight = model.model.shared.weight.index_select(0, self.ids)  # (U, D)
        self.bias = model.final_logits_bias[0].index_select(0, self.ids)  # (U,)

    @property
    def allowed(self) -> torch.Tensor:
        """(B, U) bool: allowed[b, u] = ids[u] is a candidate of sentence b."""
        return self.blocked == 0

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, J, D) -> (B, J, U) logits over the candidates."""
        if self.int8 is not None:
            scores = self.int8.logits(hidden, self.packed).to(hidden.dtype)
        else:
            scores = F.linear(hidden, self.weight, self.bias)
        return scores + self.blocked[:, None, :].to(scores.dtype)

    def select(self, rows: torch.Tensor) -> "ShortlistOutput":
        """Keep sentences `rows` (N,) (greedy drops finished sentences); weights are shared."""
        kept = object.__new__(ShortlistOutput)
        kept.ids, kept.weight, kept.bias, kept.int8, kept.packed = self.ids, self.weight, self.bias, self.int8, self.packed
        kept.blocked = self.blocked.index_select(0, rows)
        return kept


@dataclass(frozen=True)
class SamplingOptions:
    """Ancestral sampling: softmax(logits / temperature), restricted to the `top_k` most
    likely words and to the smallest set whose probability reaches `top_p`."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or (self.top_k is not None and self.top_k < 1):
            raise ValueError(
                f"sampling needs temperature > 0, 0 < top_p <= 1 and top_k >= 1 or None; got {self}"
            )

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, C) -> sampled column (B,)."""
        logits = logits.float() / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            ahead = probs.cumsum(-1) - probs  # probability of the words ranked before each word
            drop_sorted = ahead >= self.top_p  # the top word always stays (ahead = 0)
            drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)  # back to column order
            logits = logits.masked_fill(drop, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1)[:, 0]


def _keep_rows(model: MarianNativeModel, rows: torch.Tensor) -> None:
    """Finished sources left the batch: modules that follow rows (per-example adapter routing,
    `keep_route_rows`) keep those of `rows` (positions among the current sources)."""
    for module in model.modules():
        keep = getattr(module, "keep_route_rows", None)
        if keep is not None:
            keep(rows)


def _logits(model: MarianNativeModel, hidden: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary logits (..., V): the int8 output layer when the model has one."""
    int8 = getattr(model, "int8_output", None)
    return model.logits(hidden) if int8 is None else int8.logits(hidden).to(hidden.dtype)


def _length_caps(attention_mask: torch.Tensor, max_new_tokens: int | None, factor: float) -> torch.Tensor:
    """(B,) maximum number of output tokens (including `</s>`) for each sentence."""
    src_len = attention_mask.sum(dim=1).float()
    caps = torch.ceil(src_len * factor).long().clamp(min=1)
    if max_new_tokens is not None:
        caps = caps.clamp(max=max_new_tokens)
    return caps


@torch.no_grad()
def greedy_search(
    model: MarianNativeModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int | None = None,
    max_length_factor: float = 2.5,
    shortlist: LexicalShortlist | None = None,
    sampling: SamplingOptions | None = None,
) -> torch.Tensor:
    """Greedy decoding: out[b, t] = argmax_w p(w | out[b, :t], src[b]) until `</s>` or the cap
    (or a sample from p with `sampling`).

    Finished rows are dropped from the batch (and from the cache) so late steps only pay
    for sentences still being written. Returns (B, T) ids padded with pad_id.
    """
    config = model.config
    batch = input_ids.shape[0]
    caps = _length_caps(attention_mask, max_new_tokens, max_length_factor)
    out = torch.full((batch, int(caps.max())), config.pad_id, dtype=torch.long, device=input_ids.device)
    encoder_hidden, enc_mask = model.encode_masked(input_ids, attention_mask)  # (B, S', D), (B, S')
    cache = model.model.decoder.init_cache(encoder_hidden, enc_mask)
    active = torch.arange(batch, device=input_ids.device)  # original row of each live row
    output = None if shortlist is None else ShortlistOutput(model, shortlist, input_ids, attention_mask)
    previous = torch.full((batch,), config.pad_id, dtype=torch.long, device=input_ids.device)
    steps = 0
    for t in range(out.shape[1]):
        hidden = model.decode_step_hidden(previous, t, cache, enc_mask)  # (b, D)
        logits = _logits(model, hidden) if output is None else output.logits(hidden[:, None])[:, 0]  # (b, V or U)
        choice = logits.argmax(dim=-1) if sampling is None else sampling.choose(logits)  # (b,)
        next_ids = choice if output is None else output.ids[choice]
        out[active, t] = next_ids
        steps = t + 1
        done = (next_ids == config.eos_id) | (caps[active] <= t + 1)
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            active, enc_mask, next_ids = active[keep], enc_mask[keep], next_ids[keep]
            cache = reorder_cache(cache, keep)
            output = None if output is None else output.select(keep)
            _keep_rows(model, keep)
        previous = next_ids
    return out[:, :steps]


def _reorder_beams(cache: list[LayerCache], rows: torch.Tensor, sentence_rows: torch.Tensor | None) -> list[LayerCache]:
    """The cache for the next step of beam search.

    rows (N,): the row each new beam continues; sentence_rows (N,) or None: rows of the kept
    sentences, in order (None when no sentence left the batch). Every beam of a sentence has
    the same cross-attention keys/values, so moving beams within their sentence leaves those
    as they are; they are selected only when sentences leave (copying them each step cost
    ~10% of beam decoding):
        cross_*[new] = cross_*[sentence_rows] if sentence_rows is not None else cross_*
        other[new]   = other[rows]            (SSRU state, self-attention keys/values)
    """
    return [
        {name: (tensor if sentence_rows is None else tensor.index_select(0, sentence_rows))
         if name.startswith("cross_") else tensor.index_select(0, rows) for name, tensor in layer.items()}
        for layer in cache
    ]


@torch.no_grad()
def beam_search(
    model: MarianNativeModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_beams: int = 4,
    max_new_tokens: int | None = None,
    max_length_factor: float = 2.5,
    length_penalty: float = 1.0,
    shortlist: LexicalShortlist | None = None,
    num_return_sequences: int = 1,
) -> torch.Tensor:
    """Beam search; hypotheses are ranked by sum(log p) / length ** length_penalty.

    Each step takes the top 2K continuations of a sentence's K beams; those ending in `</s>`
    (among the top K) become finished hypotheses, the best K others form the next beams.
    A sentence is done when it has K finished hypotheses or reaches its length cap (its
    live beams then count as finished); done sentences leave the batch (and the cache), as in
    greedy search, so late steps only pay for sentences still searching. Caches are
    reordered by the chosen beams' rows.
    Returns (B * num_return_sequences, T) ids padded with pad_id, each sentence's best first.
    """
    config = model.config
    device = input_ids.device
    batch, k = input_ids.shape[0], num_beams
    caps = _length_caps(attention_mask, max_new_tokens, max_length_factor).tolist()
    encoder_hidden, encoder_mask = model.encode_masked(input_ids, attention_mask)  # (B, S', D), (B, S')
    cache = model.model.decoder.init_cache(encoder_hidden, encoder_mask)
    # rows i*K .. i*K+K-1 are the beams of live sentence i, which is sentence live[i] of the batch
    live = list(range(batch))
    expand = torch.arange(batch, device=device).repeat_interleave(k)
    cache = reorder_cache(cache, expand)
    enc_mask = encoder_mask.index_select(0, expand)
    beam_scores = torch.full((batch, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0  # all beams start identical: expand only the first at step 0
    tokens = torch.empty((batch * k, 0), dtype=torch.long, device=device)
    previous = torch.full((batch * k,), config.pad_id, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    # the shortlist is per sentence, shared by its beams, so it never needs reordering
    output = None if shortlist is None else ShortlistOutput(model, shortlist, input_ids, attention_mask)

    for t in range(max(caps)):
        n = len(live)
        hidden = model.decode_step_hidden(previous, t, cache, enc_mask).view(n, k, -1)  # (n, K, D)
        logits = _logits(model, hidden) if output is None else output.logits(hidden)  # (n, K, V or C)
        logp = F.log_softmax(logits.float(), dim=-1)
        vocab = logp.shape[-1]
        candidates = (beam_scores[:, :, None] + logp).view(n, k * vocab)
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # (n, 2K)
        top_token = top_index % vocab if output is None else output.ids[top_index % vocab]
        top_scores_l, top_beam_l, top_token_l = (
            top_scores.tolist(), (top_index // vocab).tolist(), top_token.tolist())
        tokens_l = None  # materialised lazily: only needed when a hypothesis finishes
        # plain lists while choosing (per-element tensor writes cost more than the choice)
        next_scores, next_rows, next_tokens, still = [], [], [], []
        for i, b in enumerate(live):
            at_cap = t + 1 >= caps[b]
            scores, rows, chosen = [float("-inf")] * k, list(range(i * k, i * k + k)), [config.pad_id] * k
            filled = 0
            for rank in range(2 * k):
                score = top_scores_l[i][rank]
                if score == float("-inf"):
                    break
                row, token = i * k + top_beam_l[i][rank], top_token_l[i][rank]
                if token == config.eos_id or at_cap:
                    if rank < k:
                        if tokens_l is None:
                            tokens_l = tokens.tolist()
                        normalised = score / (t + 1) ** length_penalty
                        finished[b].append((normalised, tokens_l[row] + [token]))
                    continue
                scores[filled], rows[filled], chosen[filled] = score, row, token
                filled += 1
                if filled == k:
                    break
            if len(finished[b]) < k and not at_cap:
                still.append(i)
                next_scores.append(scores)
                next_rows += rows
                next_tokens += chosen
        if not still:
            break
        sentence_rows = None
        if len(still) < n:  # drop done sentences: their shortlist rows and encoder states go with them
            live = [live[i] for i in still]
            kept = torch.tensor(still, dtype=torch.long, device=device)
            output = None if output is None else output.select(kept)
            _keep_rows(model, kept)  # routes are per sentence, expanded to its k beams
            sentence_rows = (kept[:, None] * k + torch.arange(k, device=device)).view(-1)
            enc_mask = enc_mask.index_select(0, sentence_rows)
        rows = torch.tensor(next_rows, dtype=torch.long, device=device)
        previous = torch.tensor(next_tokens, dtype=torch.long, device=device)
        beam_scores = torch.tensor(next_scores, dtype=torch.float32, device=device)
        tokens = torch.cat([tokens.index_select(0, rows), previous[:, None]], dim=1)
        cache = _reorder_beams(cache, rows, sentence_rows)

    best = []
    for hyps in finished:
        ranked = [tokens for _, tokens in sorted(hyps, key=lambda h: -h[0])]
        best += (ranked + [[config.eos_id]] * num_return_sequences)[:num_return_sequences]
    out = torch.full((len(best), max(len(h) for h in best)), config.pad_id, dtype=torch.long, device=device)
    for b, hyp in enumerate(best):
        out[b, : len(hyp)] = torch.tensor(hyp, dtype=torch.long, device=device)
    return out


@torch.no_grad()
def generate(
    model: MarianNativeModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    max_length_factor: float | None = None,
    length_penalty: float = 1.0,
    num_return_sequences: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    use_shortlist: bool = True,
    early_stopping: bool = True,
) -> torch.Tensor:
    """Translate a batch; returns generated ids (B * num_return_sequences, T) without a
    start token, padded with `pad_id` after `</s>`; the outputs of source i are rows
    [i * n, (i + 1) * n).

    Greedy when `num_beams == 1` (or ancestral sampling with `do_sample`, `temperature`,
    `top_k`, `top_p`), else beam search with scores normalised by
    length ** `length_penalty` (Marian's `normalize`), returning the n best hypotheses.
    Output length is capped per sentence at ceil(source length * max_length_factor)
    (default from the config, 2.5) and at `max_new_tokens`. With `model.shortlist` set and
    `use_shortlist`, each sentence may only produce its shortlist candidates, as Marian
    does. `early_stopping` is accepted for Hugging Face callers: beam search always stops
    a sentence once it has `num_beams` finished hypotheses.

    Raises:
        ValueError: an unsupported combination (sampling with beams, several greedy
            outputs, more outputs than beams), naming the arguments.
    """
    problems = []
    if num_beams < 1 or num_return_sequences < 1:
        problems.append(f"num_beams={num_beams} and num_return_sequences={num_return_sequences} must be >= 1")
    if do_sample and num_beams > 1:
        problems.append("do_sample=True needs num_beams=1 (beam sampling is not implemented)")
    if num_beams == 1 and not do_sample and num_return_sequences > 1:
        problems.append(f"num_return_sequences={num_return_sequences} needs do_sample=True or num_beams > 1")
    if num_beams > 1 and num_return_sequences > num_beams:
        problems.append(f"num_return_sequences={num_return_sequences} exceeds num_beams={num_beams}")
    if problems:
        raise ValueError("marian_native generate: " + "; ".join(problems))
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    factor = model.config.max_length_factor if max_length_factor is None else max_length_factor
    shortlist = model.shortlist if use_shortlist else None
    if num_beams > 1:
        return beam_search(
            model, input_ids, attention_mask, num_beams, max_new_tokens, factor, length_penalty, shortlist,
            num_return_sequences,
        )
    sampling = SamplingOptions(temperature, top_k, top_p) if do_sample else None
    if num_return_sequences > 1:  # independent samples: repeat each source n times
        input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
        attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
    return greedy_search(model, input_ids, attention_mask, max_new_tokens, factor, shortlist, sampling)


@torch.no_grad()
def sequence_scores(
    model: MarianNativeModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    output_ids: torch.Tensor,
    length_penalty: float = 1.0,
) -> torch.Tensor:
    """(B,) length-normalised log-probability of generated `output_ids` (B, T), by teacher forcing.

    The scored length runs up to and including the first `</s>` (or the whole row if none).
    Scores use the full vocabulary; compare them with outputs generated with
    `use_shortlist=False`.
    """
    is_eos = output_ids == model.config.eos_id
    width = output_ids.shape[1]
    lengths = torch.where(is_eos.any(1), is_eos.long().argmax(1) + 1, width)  # (B,) through the first </s>
    positions = torch.arange(output_ids.shape[1], device=output_ids.device)[None, :]
    labels = output_ids.masked_fill(positions >= lengths[:, None], LABEL_PAD_ID)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    total = (logp * (labels != LABEL_PAD_ID)).sum(1)
    return total / lengths.float() ** length_penalty
