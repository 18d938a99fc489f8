"""A PyTorch port of Marian-nmt transformer models (Bergamot students and base models).

Shape of the network, as Marian builds it for `type: transformer` with
`transformer-postprocess: dan` (post-norm) and `tied-embeddings-all: true`:

    encoder:  x = Wemb[src] * sqrt(dim) + sinusoid(pos)            (no LayerNorm on embeddings)
              per layer: x = LN(x + SelfAttn(x));  x = LN(x + FFN(x))
    decoder:  y_0 = 0 (a zero vector, not an embedding), y_t = Wemb[tgt_(t-1)]
              y = y * sqrt(dim) + sinusoid(pos)
              per layer: y = LN(y + SSRU(y))   or   y = LN(y + CausalSelfAttn(y))
                         y = LN(y + CrossAttn(y, encoder))
                         y = LN(y + FFN(y))
    logits  = y @ Wemb^T + decoder_ff_logit_out_b

SSRU (simpler simple recurrent unit, Kim et al. 2019), the Bergamot students' decoder cell:
    f_t = sigmoid(x_t Wf + bf);  c_t = f_t * c_(t-1) + (1 - f_t) * (x_t W);  out_t = ReLU(c_t)

Module names follow Hugging Face's Marian (`model.encoder.layers[i].self_attn.q_proj`, ...)
so that methods which target modules by name pattern (LoRA, adapters) work unchanged.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from mtadapt.models import LABEL_PAD_ID

from .binary import LexicalShortlist

DecoderType = Literal["ssru", "transformer"]
Activation = Literal["relu", "swish", "gelu"]
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "swish": F.silu,
    "gelu": F.gelu,
}

# One decoder layer's generation cache: "cross_k"/"cross_v" (B, H, S, hd) computed once from
# the encoder output; "ssru_state" (B, D) or "self_k"/"self_v" (B, H, t, hd) grown per step.
LayerCache = dict[str, torch.Tensor]


@dataclass
class MarianNativeConfig:
    """Dimensions of a Marian transformer; read from a checkpoint by `convert.config_from_checkpoint`.

    Attributes:
        dim: model (embedding) width.
        heads: attention heads; not recoverable from the weights, so it comes from
            `special:model.yml` (`transformer-heads`) or an explicit override.
        encoder_layers: number of encoder layers.
        decoder_layers: number of decoder layers.
        decoder_type: 'ssru' (Bergamot students) or 'transformer' (self-attention decoder).
        ffn_dim: inner width of the feed-forward blocks.
        vocab_size: rows of the tied embedding `Wemb`.
        pad_id: id used to pad generated outputs (Marian pads with `</s>`).
        eos_id: id of `</s>`.
        layer_norm_eps: Marian's transformer LayerNorm epsilon.
        ffn_activation: `transformer-ffn-activation` (relu for the Bergamot students).
        max_length_factor: default cap on output length, times the source length.
    """

    dim: int = 256
    heads: int = 8
    encoder_layers: int = 6
    decoder_layers: int = 2
    decoder_type: DecoderType = "ssru"
    ffn_dim: int = 1536
    vocab_size: int = 32000
    pad_id: int = 0
    eos_id: int = 0
    layer_norm_eps: float = 1e-6
    ffn_activation: Activation = "relu"
    max_length_factor: float = 2.5

    def __post_init__(self) -> None:
        problems = []
        if self.decoder_type not in ("ssru", "transformer"):
            problems.append(f"decoder_type={self.decoder_type!r}; valid: 'ssru', 'transformer'")
        if self.ffn_activation not in _ACTIVATIONS:
            problems.append(f"ffn_activation={self.ffn_activation!r}; valid: {sorted(_ACTIVATIONS)}")
        if self.heads <= 0 or self.dim % self.heads:
            problems.append(f"dim={self.dim} must be a positive multiple of heads={self.heads}")
        for name in ("dim", "encoder_layers", "decoder_layers", "ffn_dim", "vocab_size"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be positive")
        if problems:
            raise ValueError("invalid MarianNativeConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def sinusoidal_positions(
    length: int, dim: int, start: int = 0, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Marian's position signal, (length, dim): first half sin, second half cos.

    Marian spaces the frequencies by log(10000) / (dim/2 - 1) (not / (dim/2) as in fairseq).
    Rows come from a cached table, since generation asks for one position per step.
    """
    end = start + length
    table = _position_table(max(256, 1 << (end - 1).bit_length()), dim)
    return table[start:end].to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=8)
def _position_table(length: int, dim: int) -> torch.Tensor:
    half = dim // 2
    step = math.log(10000.0) / (half - 1)
    inv_timescales = torch.exp(torch.arange(half, dtype=torch.float64) * -step)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv_timescales[None, :]  # (length, half)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).float()


def single_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Attention of one query per head, as batched matmuls (a generation step's cross-attention).

        q (B, H, 1, hd); k, v (B, H, Tk, hd); allowed (B, Tk) bool or None (all keys)
        scores[b, h, j] = q[b, h] . k[b, h, j] / sqrt(hd)  (-inf where not allowed[b, j])
        out[b, h*hd + i] = sum_j softmax_j(scores[b, h])[j] * v[b, h, j, i]      -> (B, H * hd)

    = F.scaled_dot_product_attention up to float rounding; at one query and ~40 keys its
    flash kernel cost ~2.3x these two bmm calls (on CPU, one thread), paid twice per decoder
    step. Keys and values should be contiguous (the generation cache keeps them so), else
    the reshapes copy them.
    """
    b, h, tk, hd = k.shape
    scores = torch.bmm(q.reshape(b * h, 1, hd), k.reshape(b * h, tk, hd).transpose(1, 2)).view(b, h, tk)
    scores = scores * (hd ** -0.5)
    if allowed is not None:
        scores = scores.masked_fill(~allowed[:, None, :], float("-inf"))
    probs = scores.softmax(dim=-1)
    return torch.bmm(probs.view(b * h, 1, tk), v.reshape(b * h, tk, hd)).view(b, h * hd)


class MarianAttention(nn.Module):
    """Multi-head attention through `q_proj`/`k_proj`/`v_proj`/`out_proj` (called via `forward`,
    so wrapped projections such as LoRA take effect).

    Prefix hook (for prefix tuning): extra key/value positions can be put in front of the
    keys, either per call (`prefix_key`, `prefix_value`, each (B, H, P, hd)) or by setting
    `self.prefix_provider`, a callable `batch_size -> (prefix_key, prefix_value)`. Prefix
    positions are always attended to (the mask is extended with ones) and are not causal.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.prefix_provider: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, H, T, hd)
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of `states` (B, T, D), each (B, H, T, hd); cached by generation."""
        return self._split(self.k_proj(states)), self._split(self.v_proj(states))

    def forward(
        self,
        hidden: torch.Tensor,
        key_value: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        causal: bool = False,
        prefix_key: torch.Tensor | None = None,
        prefix_value: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from `hidden` (B, Tq, D) to `key_value` (each (B, H, Tk, hd)).

        Args:
            attention_mask: (B, Tk), 1 for real key positions, 0 for padding; None = all real.
            causal: query i (the last Tq of the Tk positions) sees keys j <= i + Tk - Tq.
            prefix_key, prefix_value: optional (B, H, P, hd) positions put in front of the keys.
        Returns:
            (B, Tq, D)
        """
        b, tq, d = hidden.shape
        k, v = key_value
        tk = k.shape[2]
        q = self._split(self.q_proj(hidden))  # (B, H, Tq, hd)
        # mask: (B, 1, Tq, Tk) bool, True = may attend
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, None, None, :].bool().expand(b, 1, tq, tk)
        if causal:
            allowed = torch.ones(tq, tk, dtype=torch.bool, device=hidden.device).tril(tk - tq)
            mask = allowed[None, None] if mask is None else mask & allowed
        if prefix_key is None and self.prefix_provider is not None:
            prefix_key, prefix_value = self.prefix_provider(b)
        if prefix_key is not None:
            k = torch.cat([prefix_key.to(k.dtype), k], dim=2)
            v = torch.cat([prefix_value.to(v.dtype), v], dim=2)
            if mask is not None:
                ones = torch.ones(mask.shape[0], 1, tq, prefix_key.shape[2], dtype=torch.bool, device=mask.device)
                mask = torch.cat([ones.expand(b, 1, tq, -1), mask.expand(b, 1, tq, tk)], dim=-1)
        if tq == 1 and not causal and not torch.is_grad_enabled():  # a decoder step
            return self.out_proj(single_query_attention(q, k, v, None if mask is None else mask[:, 0, 0, :])[:, None])
        # softmax(q k^T / sqrt(hd)) v, the same scaling Marian applies to q
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, Tq, hd)
        return self.out_proj(out.transpose(1, 2).reshape(b, tq, d))


class SSRU(nn.Module):
    """c_t = f_t * c_(t-1) + (1 - f_t) * (x_t W),  f_t = sigmoid(x_t Wf + bf),  out_t = ReLU(c_t)."""

    def __init__(self, dim: int):
        super().__init__()
        self.W = nn.Linear(dim, dim, bias=False)
        self.Wf = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, D); state: (B, D) cell from the previous step or None (zeros).

        Returns (ReLU(c) for every step (B, T, D), last cell state (B, D)).
        """
        xw = self.W(x)  # both projections for all steps at once; only the gate mix is sequential
        f = torch.sigmoid(self.Wf(x))
        c = torch.zeros_like(xw[:, 0]) if state is None else state
        cells = []
        for t in range(x.shape[1]):
            c = f[:, t] * c + (1.0 - f[:, t]) * xw[:, t]
            cells.append(c)
        return F.relu(torch.stack(cells, dim=1)), c


class EncoderLayer(nn.Module):
    def __init__(self, config: MarianNativeConfig):
        super().__init__()
        self.self_attn = MarianAttention(config.dim, config.heads)
        self.self_attn_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.dim, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.dim)
        self.final_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.activation = _ACTIVATIONS[config.ffn_activation]

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x + self.self_attn(x, self.self_attn.project_kv(x), attention_mask))
        return self.final_layer_norm(x + self.fc2(self.activation(self.fc1(x))))


class DecoderLayer(nn.Module):
    """SSRU (or causal self-attention), cross-attention and FFN, each followed by residual + LN."""

    def __init__(self, config: MarianNativeConfig):
        super().__init__()
        self.decoder_type = config.decoder_type
        if config.decoder_type == "ssru":
            self.ssru = SSRU(config.dim)
            self.ssru_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        else:
            self.self_attn = MarianAttention(config.dim, config.heads)
            self.self_attn_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.encoder_attn = MarianAttention(config.dim, config.heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.dim, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, config.dim)
        self.final_layer_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.activation = _ACTIVATIONS[config.ffn_activation]

    def forward(
        self,
        y: torch.Tensor,
        encoder_mask: torch.Tensor,
        encoder_hidden: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """y: (B, T, D) decoder states; during generation T = 1 and `cache` carries the past.

        `encoder_hidden` (B, S, D) is needed unless `cache` already holds cross_k/cross_v.
        """
        if self.decoder_type == "ssru":
            h, state = self.ssru(y, None if cache is None else cache.get("ssru_state"))
            if cache is not None:
                cache["ssru_state"] = state
            y = self.ssru_layer_norm(y + h)
        else:
            k, v = self.self_attn.project_kv(y)
            if cache is not None:
                if "self_k" in cache:
                    k = torch.cat([cache["self_k"], k], dim=2)
                    v = torch.cat([cache["self_v"], v], dim=2)
                cache["self_k"], cache["self_v"] = k, v
            y = self.self_attn_layer_norm(y + self.self_attn(y, (k, v), causal=True))
        if cache is not None and "cross_k" in cache:
            cross_kv = (cache["cross_k"], cache["cross_v"])
        else:
            if encoder_hidden is None:
                raise ValueError("DecoderLayer needs encoder_hidden or a cache with cross_k/cross_v")
            cross_kv = self.encoder_attn.project_kv(encoder_hidden)
            if cache is not None:
                cache["cross_k"], cache["cross_v"] = cross_kv
        y = self.encoder_attn_layer_norm(y + self.encoder_attn(y, cross_kv, encoder_mask))
        return self.final_layer_norm(y + self.fc2(self.activation(self.fc1(y))))


class MarianEncoder(nn.Module):
    def __init__(self, config: MarianNativeConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(config.dim)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_mask: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, S) ids (or (B, S, D) `inputs_embeds`, already times `embed_scale`) and mask ->
        (B, S, D) encoder states; with `return_mask` also the (B, S) mask over those states.

        The mask is returned because a method may change the encoder's input: prompt tuning
        (`mtadapt.methods.prompt`) prepends N rows and extends the mask in a pre-hook, so the
        decoder must attend over the mask the encoder actually used, not the caller's.
        """
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("MarianEncoder needs input_ids or inputs_embeds")
            inputs_embeds = self.embed_tokens(input_ids) * self.embed_scale
        x = inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        x = x + sinusoidal_positions(x.shape[1], x.shape[-1], device=x.device, dtype=x.dtype)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return (x, attention_mask) if return_mask else x


class MarianDecoder(nn.Module):
    def __init__(self, config: MarianNativeConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(config.dim)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))

    def embed(self, decoder_input_ids: torch.Tensor, start_position: int = 0) -> torch.Tensor:
        """(B, T) ids at positions start_position.. -> (B, T, D) inputs.

        Absolute position 0 is the start of the target: Marian feeds a zero vector there,
        so whatever id sits at position 0 (by convention pad) is ignored.
        """
        t = decoder_input_ids.shape[1]
        y = self.embed_tokens(decoder_input_ids) * self.embed_scale
        if start_position == 0:
            keep = torch.ones(t, 1, dtype=y.dtype, device=y.device)
            keep[0] = 0.0
            y = y * keep  # multiply, not assign: stays differentiable for the other positions
        return y + sinusoidal_positions(t, y.shape[-1], start=start_position, device=y.device, dtype=y.dtype)

    def forward(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_hidden: torch.Tensor | None,
        encoder_mask: torch.Tensor,
        cache: list[LayerCache] | None = None,
        start_position: int = 0,
    ) -> torch.Tensor:
        """(B, T) previous-token ids -> (B, T, D) decoder states (before the output layer)."""
        y = self.embed(decoder_input_ids, start_position)
        for i, layer in enumerate(self.layers):
            y = layer(y, encoder_mask, encoder_hidden, None if cache is None else cache[i])
        return y

    def init_cache(self, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor) -> list[LayerCache]:
        """Per-layer caches with the cross-attention keys/values computed once, (B, H, S, hd)."""
        caches = []
        for layer in self.layers:
            k, v = layer.encoder_attn.project_kv(encoder_hidden)
            # contiguous: every step's single-query attention reads them as (B*H, S, hd)
            caches.append({"cross_k": k.contiguous(), "cross_v": v.contiguous()})
        return caches


def reorder_cache(cache: list[LayerCache], index: torch.Tensor) -> list[LayerCache]:
    """Select batch rows `index` (N,) of every cached tensor (beam reordering, dropping finished rows)."""
    return [{name: tensor.index_select(0, index) for name, tensor in layer.items()} for layer in cache]


class MarianBackbone(nn.Module):
    """Holds `shared` (tied embedding), `encoder` and `decoder`, like HF's `MarianModel`."""

    def __init__(self, config: MarianNativeConfig):
        super().__init__()
        self.shared = nn.Embedding(config.vocab_size, config.dim)
        self.encoder = MarianEncoder(config, self.shared)
        self.decoder = MarianDecoder(config, self.shared)


def shift_right(labels: torch.Tensor, start_id: int) -> torch.Tensor:
    """Decoder inputs from labels (B, T): [start, y_0, ..., y_(T-2)], LABEL_PAD_ID replaced by start_id."""
    shifted = labels.new_full(labels.shape, start_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == LABEL_PAD_ID, start_id)


class MarianNativeModel(nn.Module):
    """Marian transformer for translation and fine-tuning (see the module docstring).

    The network only: loading (`load.load_marian`), saving (`convert.save_marian_npz`) and
    decoding (`generate.generate`) are free functions in their own modules, which import this
    one and never the other way round.
    """

    main_input_name = "input_ids"

    def __init__(self, config: MarianNativeConfig):
        super().__init__()
        self.config = config
        self.model = MarianBackbone(config)
        # Marian's decoder_ff_logit_out_b; a parameter so full fine-tuning updates it.
        self.final_logits_bias = nn.Parameter(torch.zeros(1, config.vocab_size))
        # Optional lexical shortlist (Bergamot ships one): generation then scores only each
        # sentence's candidate words, as Marian does; training always uses the full vocabulary.
        self.shortlist: LexicalShortlist | None = None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.shared

    def get_encoder(self) -> MarianEncoder:
        return self.model.encoder

    # -- computation --------------------------------------------------------------------
    def logits(self, decoder_hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V): tied output layer y Wemb^T + b."""
        return F.linear(decoder_hidden, self.model.shared.weight, self.final_logits_bias[0])

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode_masked(input_ids, attention_mask)[0]

    def encode_masked(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) source -> encoder states (B, S', D) and the mask over them (B, S'); S' = S
        unless a method prepends rows to the encoder input (prompt tuning)."""
        return self.model.encoder(input_ids=input_ids, attention_mask=attention_mask, return_mask=True)

    def decode_step_hidden(
        self, previous_ids: torch.Tensor, position: int, cache: list[LayerCache], encoder_mask: torch.Tensor
    ) -> torch.Tensor:
        """One generation step: previous token (B,) at `position` -> decoder state (B, D); updates `cache`."""
        return self.model.decoder(previous_ids[:, None], None, encoder_mask, cache, start_position=position)[:, 0]

    def decode_step(
        self, previous_ids: torch.Tensor, position: int, cache: list[LayerCache], encoder_mask: torch.Tensor
    ) -> torch.Tensor:
        """One generation step over the full vocabulary: logits (B, V)."""
        return self.logits(self.decode_step_hidden(previous_ids, position, cache, encoder_mask))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        **unused,
    ) -> Seq2SeqLMOutput:
        """Teacher-forced pass.

        Args:
            input_ids: (B, S) source ids ending in `</s>`.
            attention_mask: (B, S) 1 for real tokens; defaults to all ones.
            labels: (B, T) target ids ending in `</s>`, padded with LABEL_PAD_ID (-100).
            decoder_input_ids: (B, T); defaults to `labels` shifted right. Position 0 is the
                start position (a zero vector), whatever id it holds.
        Returns:
            Seq2SeqLMOutput with `logits` (B, T, V) and, given labels, the mean token
            cross-entropy over labels != LABEL_PAD_ID as `loss`.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("MarianNativeModel.forward needs labels or decoder_input_ids")
            decoder_input_ids = shift_right(labels, self.config.pad_id)
        if encoder_outputs is None:
            encoder_hidden, encoder_mask = self.encode_masked(input_ids, attention_mask)
        else:
            encoder_hidden, encoder_mask = encoder_outputs[0], attention_mask
            if encoder_hidden.shape[1] != encoder_mask.shape[1]:
                raise ValueError(
                    f"encoder_outputs cover {encoder_hidden.shape[1]} positions but attention_mask {encoder_mask.shape[1]}; "
                    "pass the mask from encode_masked"
                )
        hidden = self.model.decoder(decoder_input_ids, encoder_hidden, encoder_mask)
        logits = self.logits(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=LABEL_PAD_ID)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            decoder_hidden_states=None,
            encoder_last_hidden_state=encoder_hidden,
        )
