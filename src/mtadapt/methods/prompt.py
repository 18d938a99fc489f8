"""Prompt tuning (Lester et al., 2021): N trainable vectors in front of the source embeddings.

    encoder input  = [prompt (N, d) ; embed(input_ids) (T, d)]       (B, N + T, d)
    encoder mask   = [1 x N ; attention_mask]                        (B, N + T)

How it goes in (callers keep calling ``model(...)`` / ``model.generate(...)`` as before):
    * a forward pre-hook on the **encoder** (the parent of ``targets.encoder_embedding``)
      embeds ``input_ids`` with the encoder's own ``embed_tokens`` (times the encoder's
      ``embed_scale`` when, as in HF Marian, the encoder scales outside the embedding),
      prepends the prompt and calls the encoder with ``inputs_embeds`` and the extended
      mask. Positions are then computed by the encoder for N + T rows.
    * a forward pre-hook on the **decoder** (the sibling module named ``decoder``) extends
      ``encoder_attention_mask`` (B, T) to the N + T encoder states, because HF models hand
      the caller's mask to the decoder unchanged (also in ``generate``, after beam expansion).
    Wrapping only the embedding would not work: the encoder derives positions and the mask
    from ``input_ids`` (T rows), and the decoder's cross-attention mask would stay T long.

The prompt lives in the space of ``embed_tokens`` outputs (after its scaling), so
``init="vocab"`` copies the embeddings of random vocabulary ids.

Several adapters: without routing, active prompts are concatenated (in activation order).
With per-example routing, rows may use prompts of different lengths; each row is laid out
so that its tokens keep the positions they have when the row runs alone::

    N_max = longest routed prompt;  n_i = prompt length of row i (0 for base rows)
    for i in range(B):
        x[i]    = [prompt_{a_i} (n_i) ; embed(ids[i]) (T) ; 0 (N_max - n_i)]
        mask[i] = [1 (n_i)            ; attention_mask[i]   ; 0 (N_max - n_i)]

With ``placement="suffix"`` the prompt goes after each row's last real token instead (the
source keeps its positions; ``s_i`` = real tokens of row i, right padding required)::

    x[i]    = [embed(ids[i])[:s_i] ; prompt (n_i) ; embed(ids[i])[s_i:] ; 0 (N_max - n_i)]

Parameters per adapter: N * d.
Marian-native models take the same encoder hook (their encoder accepts ``inputs_embeds``)
and need no decoder hook: their encoder returns the mask it used (``encode_masked``), which
generation and the teacher-forced forward hand to the decoder.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from mtadapt.methods.base import AdapterSelection, MethodConfig, active_adapters, adapter_names, expand_routing, set_active_adapters
from mtadapt.models.targets import ModelTargets

SITE_ATTR = "prompt_tuning"


@dataclass
class PromptConfig(MethodConfig):
    """Prompt-tuning settings.

    Attributes:
        prompt_length: N, soft tokens in front of the source (>= 1).
        init: "vocab" (embeddings of random vocabulary ids) or "normal" (N(0, init_std)).
        init_std: std for ``init="normal"``.
        seed: seed of the random ids / normal draws (None = torch's global generator).
        placement: "prefix" (Lester et al.; PEFT's placement) puts the soft tokens before the
            source, shifting every source position by N; "suffix" puts them after each row's
            last real token, so the source keeps the positions the base model was trained
            with (right-padded batches only; not exportable to PEFT).
    """

    method: ClassVar[str] = "prompt"
    prompt_length: int = 20
    init: Literal["vocab", "normal"] = "vocab"
    init_std: float = 0.02
    seed: int | None = None
    placement: Literal["prefix", "suffix"] = "prefix"

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.prompt_length, int) or self.prompt_length < 1:
            problems.append(f"prompt prompt_length={self.prompt_length!r} must be an integer >= 1")
        if self.init not in ("vocab", "normal"):
            problems.append(f"prompt init={self.init!r} must be 'vocab' or 'normal'")
        if self.placement not in ("prefix", "suffix"):
            problems.append(f"prompt placement={self.placement!r} must be 'prefix' or 'suffix'")
        if not self.init_std > 0:
            problems.append(f"prompt init_std={self.init_std!r} must be > 0")
        if problems:
            raise ValueError("; ".join(problems))


def token_embeddings(encoder: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """What the encoder itself feeds its first layer for ``input_ids`` (B, T) -> (B, T, d),
    before positions: ``embed_tokens(ids)``, times ``encoder.embed_scale`` when the scaling is
    the encoder's (HF Marian) rather than the embedding module's (mBART, M2M100)."""
    embeds = encoder.embed_tokens(input_ids)
    scale = getattr(encoder, "embed_scale", None)
    if scale is not None and not hasattr(encoder.embed_tokens, "embed_scale"):
        embeds = embeds * scale
    return embeds


def layout_rows(
    prompts: torch.Tensor,
    lengths: torch.Tensor,
    tokens: torch.Tensor,
    fill: torch.Tensor,
    starts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per row, the prompt inserted at ``starts[i]`` (default 0: in front) and padded at the end::

        out[i] = [tokens[i, :s_i] ; prompts[i, :n_i] ; tokens[i, s_i:] ; fill x (N_max - n_i)]

    Args:
        prompts: (B, N_max, ...) prompt rows, valid up to ``lengths[i]``.
        lengths: (B,) long, n_i <= N_max.
        tokens: (B, T, ...).
        fill: (...) value of the trailing pad (zeros for states, 0 for masks).
        starts: (B,) long, 0 <= s_i <= T; None = zeros.
    Returns:
        (B, N_max + T, ...)
    """
    b, n_max = prompts.shape[:2]
    t = tokens.shape[1]
    source = torch.cat([prompts, tokens, fill.expand(b, 1, *tokens.shape[2:])], dim=1)  # (B, N_max+T+1, ...)
    j = torch.arange(n_max + t, device=tokens.device)[None, :]  # (1, L)
    n = lengths.to(tokens.device)[:, None]  # (B, 1)
    s = torch.zeros_like(n) if starts is None else starts.to(tokens.device)[:, None]  # (B, 1)
    index = torch.where(
        j < s, n_max + j,  # tokens before the prompt
        torch.where(j < s + n, j - s,  # the prompt
                    torch.where(j < n + t, n_max + j - n, n_max + t)),  # the other tokens, then fill
    )  # (B, L) into `source`
    index = index.view(b, n_max + t, *([1] * (tokens.dim() - 2))).expand(b, n_max + t, *tokens.shape[2:])
    return source.gather(1, index)


def suffix_starts(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) right-padded source mask -> (B,) number of real tokens: where a suffix prompt goes.

    Raises:
        ValueError: a row whose real tokens are not a prefix (left padding), where "after the
            source" would not be one place.
    """
    lengths = mask.sum(dim=1)
    if mask.shape[1] and not torch.equal(mask.bool(), torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]):
        raise ValueError("prompt tuning with placement 'suffix' needs right-padded sources (real tokens first)")
    return lengths


class SoftPrompt(AdapterSelection, nn.Module):
    """Soft prompts of all prompt adapters; child ``prompt_tuning`` of the encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts = nn.ParameterDict()  # name -> (N, d)
        self.placements: dict[str, str] = {}  # name -> "prefix" | "suffix" (from its PromptConfig)
        self._init_selection()

    # --- AdapterLayer protocol -------------------------------------------------------------
    def adapter_names(self) -> list[str]:
        return list(self.prompts.keys())

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.prompts:
            raise KeyError(f"no prompt adapter {adapter_name!r}; held: {self.adapter_names()}")
        del self.prompts[adapter_name]
        self.placements.pop(adapter_name, None)
        self._forget(adapter_name)

    def adapter_parameters(self, adapter_name: str) -> list[nn.Parameter]:
        return [self.prompts[adapter_name]]

    def adapter_state_dict(self, adapter_name: str) -> dict[str, torch.Tensor]:
        return {"prompt": self.prompts[adapter_name].detach().clone()}

    def load_adapter_state_dict(self, adapter_name: str, tensors: dict[str, torch.Tensor]) -> None:
        if set(tensors) != {"prompt"}:
            raise ValueError(f"prompt adapter expects tensors ['prompt'], got {sorted(tensors)}")
        old = self.prompts[adapter_name]
        if tensors["prompt"].shape[1:] != old.shape[1:]:
            raise ValueError(f"prompt shape {tuple(tensors['prompt'].shape)} must be (N, {old.shape[1]})")
        self.prompts[adapter_name] = nn.Parameter(tensors["prompt"].to(old.device, old.dtype).clone())

    # --- rows ------------------------------------------------------------------------------
    def placement(self) -> str:
        """Where the prompts in use go: "prefix" or "suffix".

        Raises:
            ValueError: adapters of both placements in use at once.
        """
        used = self._route_names if self._route is not None else self._active
        kinds = {self.placements.get(n, "prefix") for n in used if n in self.prompts}
        if len(kinds) > 1:
            raise ValueError(f"prompt adapters {used} mix placements {sorted(kinds)}; use one placement at a time")
        return kinds.pop() if kinds else "prefix"

    def starts(self, mask: torch.Tensor) -> torch.Tensor | None:
        """(B,) insertion point per row for `layout_rows`, from the (B, T) source mask."""
        return suffix_starts(mask) if self.placement() == "suffix" else None

    def rows(self, n_rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Prompts (N_rows, N_max, d) and lengths (N_rows,) for a batch; None = no prompt."""
        if self._route is None:
            names = [n for n in self._active if n in self.prompts]
            if not names:
                return None
            p = torch.cat([self.prompts[n] for n in names], dim=0)  # (N, d)
            lengths = torch.full((n_rows,), p.shape[0], dtype=torch.long, device=p.device)
            return p.expand(n_rows, -1, -1), lengths
        r = expand_routing(self._route, n_rows)
        held = [self.prompts[n] if n in self.prompts else None for n in self._route_names]
        sizes = [p.shape[0] if p is not None else 0 for p in held]
        n_max = max(sizes, default=0)
        if n_max == 0:
            return None
        some = next(p for p in held if p is not None)
        zeros = some.new_zeros(n_max, some.shape[1])
        table = torch.stack(
            [torch.cat([p, zeros[: n_max - p.shape[0]]]) if p is not None else zeros for p in held] + [zeros]
        )  # (A+1, N_max, d); slot A = base rows
        slot = torch.where(r.to(some.device) < 0, len(held), r.to(some.device))
        lengths = torch.tensor(sizes + [0], device=some.device).index_select(0, slot)
        return table.index_select(0, slot), lengths


def _bound_kwargs(module: nn.Module, args: tuple, kwargs: dict) -> dict:
    """All call arguments by name, so hooks can rewrite them whatever the call style."""
    signature = inspect.signature(module.forward)
    out = dict(signature.bind_partial(*args, **kwargs).arguments)
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            out.update(out.pop(name, {}))
    return out


def _encoder_pre_hook(encoder: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    soft: SoftPrompt = getattr(encoder, SITE_ATTR)
    call = _bound_kwargs(encoder, args, kwargs)
    input_ids, embeds = call.get("input_ids"), call.get("inputs_embeds")
    if embeds is None:
        if input_ids is None:
            return None  # let the encoder raise its own error
        embeds = token_embeddings(encoder, input_ids)  # (B, T, d)
    rows = soft.rows(embeds.shape[0])
    if rows is None:
        return None
    prompts, lengths = rows  # (B, N_max, d), (B,)
    mask = call.get("attention_mask")
    if mask is None:
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    starts = soft.starts(mask)  # None: in front; else after each row's real tokens
    call["inputs_embeds"] = layout_rows(prompts.to(embeds.dtype), lengths, embeds, embeds.new_zeros(embeds.shape[-1]), starts)
    keep = torch.arange(prompts.shape[1], device=mask.device)[None, :] < lengths.to(mask.device)[:, None]
    call["attention_mask"] = layout_rows(keep.to(mask.dtype), lengths, mask, mask.new_zeros(()), starts)
    call["input_ids"] = None
    return (), call


def _decoder_pre_hook(soft: SoftPrompt, decoder: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    call = _bound_kwargs(decoder, args, kwargs)
    states = call.get("encoder_hidden_states")
    if states is None:
        return None
    rows = soft.rows(states.shape[0])
    if rows is None:
        return None
    prompts, lengths = rows
    n_max, total = prompts.shape[1], states.shape[1]
    mask = call.get("encoder_attention_mask")
    if mask is not None and mask.shape[-1] == total:
        return None  # already covers the prompt rows
    if mask is None:
        mask = torch.ones(states.shape[0], total - n_max, dtype=torch.long, device=states.device)
    if mask.dim() != 2 or mask.shape[-1] + n_max != total:
        raise ValueError(
            f"prompt tuning: encoder_attention_mask {tuple(mask.shape)} does not fit encoder states of length "
            f"{total} with a prompt of {n_max}; pass the (B, T) source mask"
        )
    keep = torch.arange(n_max, device=mask.device)[None, :] < lengths.to(mask.device)[:, None]
    call["encoder_attention_mask"] = layout_rows(keep.to(mask.dtype), lengths, mask, mask.new_zeros(()), soft.starts(mask))
    return (), call


def _encoder_and_decoder(model: nn.Module, targets: ModelTargets) -> tuple[nn.Module, nn.Module]:
    encoder_path = targets.encoder_embedding.rpartition(".")[0]
    parent, _, leaf = encoder_path.rpartition(".")
    decoder_path = f"{parent}.decoder" if parent else "decoder"
    try:
        encoder, decoder = model.get_submodule(encoder_path), model.get_submodule(decoder_path)
    except AttributeError as err:
        raise ValueError(
            f"prompt tuning needs the encoder (parent of encoder_embedding={targets.encoder_embedding!r}) and "
            f"a sibling 'decoder'; {err}"
        ) from err
    if "inputs_embeds" not in inspect.signature(encoder.forward).parameters:
        raise TypeError(f"{type(encoder).__name__}.forward takes no inputs_embeds; prompt tuning needs it")
    return encoder, decoder


def apply(model: nn.Module, config: PromptConfig, targets: ModelTargets, adapter_name: str = "default") -> None:
    """Add prompt adapter ``adapter_name`` (hooks installed once).

    The new adapter becomes active when no adapter was active before, as with LoRA.
    """
    if not isinstance(config, PromptConfig):
        raise TypeError(f"config must be a PromptConfig, got {type(config).__name__}")
    was_active = active_adapters(model) if adapter_names(model) else []
    encoder, decoder = _encoder_and_decoder(model, targets)
    soft = getattr(encoder, SITE_ATTR, None)
    if soft is None:
        soft = SoftPrompt()
        encoder.add_module(SITE_ATTR, soft)
        encoder.register_forward_pre_hook(_encoder_pre_hook, with_kwargs=True)
        decoder.register_forward_pre_hook(
            lambda module, args, kwargs: _decoder_pre_hook(soft, module, args, kwargs), with_kwargs=True
        )
    if adapter_name in soft.prompts:
        raise ValueError(f"prompt adapter {adapter_name!r} already exists; held: {soft.adapter_names()}")
    weight = encoder.embed_tokens.weight  # (V, d)
    # seed None: the draw comes from torch's global generator, so a run seeded by the training
    # loop (set_seed) initialises the same prompt every time
    g = torch.Generator(device="cpu")
    g.manual_seed(config.seed if config.seed is not None else int(torch.randint(0, 2**62, ())))
    with torch.no_grad():
        if config.init == "vocab":
            ids = torch.randint(0, weight.shape[0], (config.prompt_length,), generator=g).to(weight.device)
            init = token_embeddings(encoder, ids[None])[0]
        else:
            init = torch.randn(config.prompt_length, weight.shape[1], generator=g) * config.init_std
    soft.prompts[adapter_name] = nn.Parameter(init.to(weight.device, weight.dtype).clone())
    soft.placements[adapter_name] = config.placement
    set_active_adapters(model, was_active or [adapter_name])
