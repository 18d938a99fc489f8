"""Prefix tuning (Li & Liang, 2021): trainable key/value rows in front of attention keys.

Every targeted attention (encoder self-attention, decoder self-attention, decoder
cross-attention; each a switch) attends over ``P`` extra positions per adapter::

    K' = [K_prefix ; K]      V' = [V_prefix ; V]     (B, H, P + T_k, hd)
    mask' = [attend x P ; mask]                        (B, 1, T_q, P + T_k)

Prefix positions are visible from every query (not causal) and carry no position: T5's
relative position bias is 0 on them.

Where the prefix goes in, and why (HF transformers 5.x):
    HF attentions compute q/k/v, update the KV cache, then call
    ``ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager)``.
    Each targeted attention gets a private shallow copy of its config whose
    ``_attn_implementation`` is ``"mtadapt_prefix"``, a function registered here that adds
    the prefix to K/V and the mask and calls the original implementation ("eager" - the
    model file's own - or "sdpa"). The prefix therefore never enters the KV cache: the
    decoder self-attention cache, cross-attention cache, ``cache.get_seq_length()`` and so
    the decoder positions stay exactly as without prefixes, at every generation step and
    for any source length (the failure of peft#565, where a cache was recognised by its
    length, cannot happen). Masks may arrive as None (sdpa's ``is_causal`` path: we then
    build the bottom-right-aligned causal mask ourselves), 4D bool (True = attend) or 4D
    additive float; the prefix columns are added in the same format. Flash/flex attention
    are not supported (their masks are not 4D tensors): `apply` refuses them.

    The Marian-native attention (``models/marian_native``) exposes ``prefix_provider``
    (``batch -> (K, V)`` each (B, H, P, hd)), which we set instead.

Reparameterisation (``reparameterize=True``): per adapter an embedding E (P, w), a tanh
MLP and one output slice per site::

    h = tanh(E W1^T + b1)                 (P, hidden)
    [K_s ; V_s] = h W2[s]^T + b2[s]       (P, 2w)    for site s

The MLP exists only for training; `adapter_state_dict` saves the final K_s, V_s (P, w)
and loading them (or `fold_reparameterisation`) gives plain prefixes.

Several adapters: without routing the active adapters' prefixes are concatenated. With
per-example routing (`mtadapt.methods.base`), ``r = expand_routing(route, N)``::

    P_max = max prefix length among the routed adapters held here
    for i in range(N):
        a = route_names[r[i]] if r[i] != -1 and held here else None
        K_p[i, :, :P_a] = K_a ;  keep[i, :P_a] = True      (P_a = 0 for None)
        keep[i, P_a:] = False                              (masked, K_p = 0 there)

Parameters (S sites, width w = heads * head_dim, prefix length P):
    plain prefixes: 2 * S * P * w
    reparameterised (training): P*w + (w*hidden + hidden) + (hidden*2*S*w + 2*S*w)
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from mtadapt.methods.base import (
    AdapterSelection,
    MethodConfig,
    active_adapters,
    adapter_names,
    expand_routing,
    find_modules,
    set_active_adapters,
)
from mtadapt.models.targets import ModelTargets, PrefixHook

PREFIX_ATTENTION = "mtadapt_prefix"
SUPPORTED_ATTENTION = ("eager", "sdpa")
REPARAM_ATTR = "prefix_reparameterisation"
SITE_ATTR = "prefix_tuning"


@dataclass
class PrefixConfig(MethodConfig):
    """Prefix-tuning settings.

    Attributes:
        prefix_length: P, prefix rows per attention (>= 1).
        encoder_self_attention: prefixes in encoder self-attention.
        decoder_self_attention: prefixes in decoder self-attention (skipped for families
            without one, such as Marian-native SSRU decoders).
        cross_attention: prefixes in decoder cross-attention.
        reparameterize: train through the tanh MLP of Li & Liang (folded away at save).
        reparam_hidden: hidden size of that MLP.
        init_std: std of the normal init of the prefixes (or of the MLP's input embedding).
    """

    method: ClassVar[str] = "prefix"
    prefix_length: int = 20
    encoder_self_attention: bool = True
    decoder_self_attention: bool = True
    cross_attention: bool = True
    reparameterize: bool = True
    reparam_hidden: int = 512
    init_std: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.prefix_length, int) or self.prefix_length < 1:
            problems.append(f"prefix prefix_length={self.prefix_length!r} must be an integer >= 1")
        if not (self.encoder_self_attention or self.decoder_self_attention or self.cross_attention):
            problems.append(
                "prefix: at least one of encoder_self_attention, decoder_self_attention, cross_attention must be true"
            )
        if not isinstance(self.reparam_hidden, int) or self.reparam_hidden < 1:
            problems.append(f"prefix reparam_hidden={self.reparam_hidden!r} must be an integer >= 1")
        if not self.init_std > 0:
            problems.append(f"prefix init_std={self.init_std!r} must be > 0")
        if problems:
            raise ValueError("; ".join(problems))


def prefix_parameter_count(config: PrefixConfig, sites: int, width: int) -> int:
    """Trainable parameters of one adapter over ``sites`` attentions of width ``width``."""
    p = config.prefix_length
    if not config.reparameterize:
        return 2 * sites * p * width
    hidden = config.reparam_hidden
    return p * width + width * hidden + hidden + hidden * 2 * sites * width + 2 * sites * width


class PrefixMLP(nn.Module):
    """Li & Liang's reparameterisation for one adapter: E (P, w) -> per-site K, V (P, w_s)."""

    def __init__(self, config: PrefixConfig, site_widths: Sequence[int]) -> None:
        super().__init__()
        width = site_widths[0]
        self.site_widths = list(site_widths)
        self.offsets = [0]
        for w in self.site_widths:
            self.offsets.append(self.offsets[-1] + 2 * w)
        self.embedding = nn.Parameter(torch.randn(config.prefix_length, width) * config.init_std)
        self.hidden = nn.Linear(width, config.reparam_hidden)
        self.out = nn.Linear(config.reparam_hidden, self.offsets[-1])

    def site_kv(self, site: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V (P, w_s) of one site; only that site's slice of the output layer is computed."""
        h = torch.tanh(self.hidden(self.embedding))  # (P, hidden)
        lo, hi, w = self.offsets[site], self.offsets[site + 1], self.site_widths[site]
        kv = F.linear(h, self.out.weight[lo:hi], self.out.bias[lo:hi])  # (P, 2w)
        return kv[:, :w], kv[:, w:]


class PrefixReparameterisation(nn.Module):
    """The MLPs of all reparameterised prefix adapters (held at the model root).

    An `AdapterLayer` so the MLP parameters are trained, frozen and deleted with their
    adapter; it saves nothing (the sites save the folded prefixes) and loading its empty
    state folds it away.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mlps = nn.ModuleDict()
        self._active: list[str] = []

    def adapter_names(self) -> list[str]:
        return list(self.mlps.keys())

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.mlps:
            raise KeyError(f"no prefix MLP {adapter_name!r}; held: {self.adapter_names()}")
        del self.mlps[adapter_name]

    def set_active_adapters(self, adapter_names: Sequence[str]) -> None:
        self._active = list(adapter_names)

    def active_adapters(self) -> list[str]:
        return list(self._active)

    def set_routing(self, route: torch.Tensor | None, route_names: Sequence[str]) -> None:
        pass  # the sites route; this module only holds parameters

    def adapter_parameters(self, adapter_name: str) -> list[nn.Parameter]:
        return list(self.mlps[adapter_name].parameters())

    def adapter_state_dict(self, adapter_name: str) -> dict[str, torch.Tensor]:
        return {}

    def load_adapter_state_dict(self, adapter_name: str, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise ValueError(f"prefix MLP {adapter_name!r} saves no tensors, got {sorted(tensors)}")
        self.delete_adapter(adapter_name)  # the sites have (or will get) the folded prefixes


def _attention_geometry(attention: nn.Module) -> tuple[int, int]:
    """(heads, head_dim) of an HF (MBart/M2M100/Marian/T5) or Marian-native attention."""
    heads = next((getattr(attention, a) for a in ("num_heads", "n_heads", "heads") if hasattr(attention, a)), None)
    head_dim = next((getattr(attention, a) for a in ("head_dim", "key_value_proj_dim") if hasattr(attention, a)), None)
    if not isinstance(heads, int) or not isinstance(head_dim, int):
        raise TypeError(
            f"{type(attention).__name__} does not say its heads/head_dim (looked for num_heads, n_heads, heads; "
            "head_dim, key_value_proj_dim)"
        )
    return heads, head_dim


class PrefixSite(AdapterSelection, nn.Module):
    """Prefixes of one attention module, child ``prefix_tuning`` of that module.

    Holds plain prefixes (``prefix_keys[name]``, ``prefix_values[name]``, each (P, w)) or a
    reference to a `PrefixMLP` slice; `prefix_kv` gives the rows for a batch.
    """

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.heads, self.head_dim = _attention_geometry(attention)
        self.prefix_keys = nn.ParameterDict()
        self.prefix_values = nn.ParameterDict()
        # name -> (mlp, site index); a plain dict so the MLP is registered once, at the root
        self._reparam: dict[str, tuple[PrefixMLP, int]] = {}
        self._order: list[str] = []
        self._init_selection()
        self.base_implementation: str | None = None  # HF only: "eager" or "sdpa"

    @property
    def width(self) -> int:
        return self.heads * self.head_dim

    def add_prefix(self, adapter_name: str, config: PrefixConfig, mlp: PrefixMLP | None, site: int,
                   like: torch.Tensor) -> None:
        if adapter_name in self._order:
            raise ValueError(f"prefix adapter {adapter_name!r} already exists here; held: {self._order}")
        if mlp is not None:
            self._reparam[adapter_name] = (mlp, site)
        else:
            shape = (config.prefix_length, self.width)  # (P, w), the layout of k_proj outputs
            for table in (self.prefix_keys, self.prefix_values):
                table[adapter_name] = nn.Parameter(
                    torch.randn(shape, device=like.device, dtype=like.dtype) * config.init_std
                )
        self._order.append(adapter_name)

    def prefix(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V of one adapter, each (P, w)."""
        if adapter_name in self._reparam:
            mlp, site = self._reparam[adapter_name]
            return mlp.site_kv(site)
        return self.prefix_keys[adapter_name], self.prefix_values[adapter_name]

    def fold(self, adapter_name: str) -> None:
        """Replace an MLP-generated prefix by its current value as plain parameters."""
        if adapter_name not in self._reparam:
            return
        with torch.no_grad():
            k, v = self.prefix(adapter_name)
        self.prefix_keys[adapter_name] = nn.Parameter(k.detach().clone())
        self.prefix_values[adapter_name] = nn.Parameter(v.detach().clone())
        del self._reparam[adapter_name]

    # --- AdapterLayer protocol -------------------------------------------------------------
    def adapter_names(self) -> list[str]:
        return list(self._order)

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self._order:
            raise KeyError(f"no prefix adapter {adapter_name!r} here; held: {self._order}")
        self._reparam.pop(adapter_name, None)
        if adapter_name in self.prefix_keys:
            del self.prefix_keys[adapter_name]
            del self.prefix_values[adapter_name]
        self._order.remove(adapter_name)
        self._forget(adapter_name)

    def adapter_parameters(self, adapter_name: str) -> list[nn.Parameter]:
        if adapter_name in self.prefix_keys:
            return [self.prefix_keys[adapter_name], self.prefix_values[adapter_name]]
        return []  # reparameterised: the MLP's parameters belong to PrefixReparameterisation

    def adapter_state_dict(self, adapter_name: str) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            k, v = self.prefix(adapter_name)
        return {"prefix_key": k.detach().clone(), "prefix_value": v.detach().clone()}

    def load_adapter_state_dict(self, adapter_name: str, tensors: dict[str, torch.Tensor]) -> None:
        expected = {"prefix_key", "prefix_value"}
        if set(tensors) != expected:
            raise ValueError(f"prefix site expects tensors {sorted(expected)}, got {sorted(tensors)}")
        for t in tensors.values():
            if t.ndim != 2 or t.shape[1] != self.width:
                raise ValueError(f"prefix tensor shape {tuple(t.shape)} must be (P, {self.width})")
        self._reparam.pop(adapter_name, None)
        like = next(iter(self.parameters()), tensors["prefix_key"])
        self.prefix_keys[adapter_name] = nn.Parameter(tensors["prefix_key"].to(like.device, like.dtype).clone())
        self.prefix_values[adapter_name] = nn.Parameter(tensors["prefix_value"].to(like.device, like.dtype).clone())

    # --- the rows a batch sees -------------------------------------------------------------
    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (..., P, w) -> (..., H, P, hd)
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(-3, -2)

    def prefix_kv(self, n_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """Prefix rows for a batch of ``n_rows``: K, V (N, H, P, hd) and keep (N, P) bool.

        ``keep`` is None when every row sees every prefix row; the result is None when no
        row has a prefix here (the attention then runs unchanged).
        """
        if self._route is None:
            names = [n for n in self._active if n in self._order]
            if not names:
                return None
            kvs = [self.prefix(n) for n in names]
            k = torch.cat([kv[0] for kv in kvs], dim=0)  # (P_total, w)
            v = torch.cat([kv[1] for kv in kvs], dim=0)
            k, v = self._heads(k), self._heads(v)  # (H, P, hd)
            return k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1), None
        return self._routed_prefix_kv(n_rows)

    def _routed_prefix_kv(self, n_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        r = expand_routing(self._route, n_rows)  # (N,)
        held = [n if n in self._order else None for n in self._route_names]
        kvs = [self.prefix(n) if n is not None else None for n in held]
        lengths = [kv[0].shape[0] if kv is not None else 0 for kv in kvs]
        p_max = max(lengths, default=0)
        if p_max == 0:
            return None
        some = next(kv for kv in kvs if kv is not None)[0]
        device = some.device
        # Table of A+1 prefixes padded to P_max; slot A (zeros, all masked) serves base rows.
        zeros = some.new_zeros(p_max, self.width)

        def padded(t: torch.Tensor) -> torch.Tensor:  # (P_a, w) -> (P_max, w)
            return F.pad(t, (0, 0, 0, p_max - t.shape[0]))

        k_table = torch.stack([padded(kv[0]) if kv else zeros for kv in kvs] + [zeros])  # (A+1, P_max, w)
        v_table = torch.stack([padded(kv[1]) if kv else zeros for kv in kvs] + [zeros])
        sizes = torch.tensor(lengths + [0], device=device)  # (A+1,)
        keep_table = torch.arange(p_max, device=device)[None, :] < sizes[:, None]  # (A+1, P_max)
        slot = torch.where(r.to(some.device) < 0, len(kvs), r.to(some.device))  # (N,)
        k = self._heads(k_table.index_select(0, slot))  # (N, H, P_max, hd)
        v = self._heads(v_table.index_select(0, slot))
        keep = keep_table.index_select(0, slot)  # (N, P_max)
        return k, v, (None if bool(keep.all()) else keep)

    def native_provider(self, batch_size: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """`MarianAttention.prefix_provider`: always-visible prefixes only (no per-row mask)."""
        out = self.prefix_kv(batch_size)
        if out is None:
            return None, None  # MarianAttention then runs without prefix
        k, v, keep = out
        if keep is not None:
            raise NotImplementedError(
                "Marian-native attention cannot mask prefix rows per example: routed rows must all "
                "use adapters with the same prefix length (no '__base__' rows) here"
            )
        return k, v


def extend_attention_mask(
    mask: torch.Tensor | None,
    keep: torch.Tensor | None,
    n_prefix: int,
    q_len: int,
    kv_len: int,
    causal: bool,
    as_bool: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Put ``n_prefix`` columns in front of a 4D attention mask.

    Semantics (bool form, True = may attend)::

        out[i, h, q, :P]  = keep[i] if keep is not None else True
        out[i, h, q, P:]  = mask[i, h, q]            if mask is not None
                          = (k <= q + kv_len - q_len) if causal  (bottom-right aligned)
                          = True                      otherwise

    Args:
        mask: (b, h, q, kv) bool or additive float mask, or None.
        keep: (N, P) bool per-row prefix visibility, or None (all visible).
        as_bool: output format when ``mask`` is None (bool for sdpa, additive for eager);
            otherwise the format of ``mask`` is kept.
    Returns:
        (b', h, q, P + kv), additive float masks use 0 / finfo(dtype).min.
    """
    if mask is None:
        if causal and q_len > 1:
            base = torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril(kv_len - q_len)[None, None]
        else:
            base = torch.ones(1, 1, q_len, kv_len, dtype=torch.bool, device=device)
        if not as_bool:
            base = torch.zeros(base.shape, dtype=dtype, device=device).masked_fill(~base, torch.finfo(dtype).min)
    else:
        base = mask
    rows_q = base.shape[2]
    if keep is None:
        prefix = torch.ones(1, 1, rows_q, n_prefix, dtype=torch.bool, device=device)
    else:
        prefix = keep[:, None, None, :].to(device).expand(-1, 1, rows_q, -1)
    if base.dtype != torch.bool:
        prefix = torch.zeros(prefix.shape, dtype=base.dtype, device=device).masked_fill(
            ~prefix, torch.finfo(base.dtype).min
        )
    n = max(base.shape[0], prefix.shape[0])
    heads = base.shape[1]
    return torch.cat(
        [prefix.expand(n, heads, rows_q, -1), base.expand(n, heads, rows_q, base.shape[-1])], dim=-1
    )


def _base_attention_function(module: nn.Module, implementation: str) -> Callable:
    if implementation == "eager":
        # "eager" is each model file's own function (T5's adds position_bias)
        fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
        if fn is None:
            raise TypeError(f"{type(module).__module__} has no eager_attention_forward for prefix tuning")
        return fn
    return ALL_ATTENTION_FUNCTIONS[implementation]


def prefix_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
):
    """Registered as ``"mtadapt_prefix"``: prefix K/V and mask columns, then the original
    attention. query (N, H, T_q, hd); key, value (N, H, T_k, hd) already include the cache."""
    site: PrefixSite = getattr(module, SITE_ATTR)
    attend = _base_attention_function(module, site.base_implementation)
    rows = site.prefix_kv(query.shape[0])
    if rows is None:
        return attend(module, query, key, value, attention_mask, **kwargs)
    k_p, v_p, keep = rows
    n_prefix = k_p.shape[2]
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = kwargs.pop("is_causal", None)
    causal = getattr(module, "is_causal", False) if causal is None else causal
    attention_mask = extend_attention_mask(
        attention_mask, keep, n_prefix, q_len, kv_len, bool(causal),
        as_bool=site.base_implementation != "eager", dtype=query.dtype, device=query.device,
    )
    key = torch.cat([k_p.to(key.dtype), key], dim=2)  # (N, H, P + T_k, hd)
    value = torch.cat([v_p.to(value.dtype), value], dim=2)
    if kwargs.get("position_bias") is not None:
        # T5: no relative position for prefix rows -> bias 0 in their columns
        kwargs["position_bias"] = F.pad(kwargs["position_bias"], (n_prefix, 0))
    return attend(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(PREFIX_ATTENTION, prefix_attention_forward)


def _install_site(attention: nn.Module, hook: PrefixHook) -> PrefixSite:
    """Attach a `PrefixSite` to one attention module (once), through the family's `hook`."""
    existing = getattr(attention, SITE_ATTR, None)
    if isinstance(existing, PrefixSite):
        return existing
    site = PrefixSite(attention)
    if hook == "prefix_provider":  # mtadapt's Marian attention calls it for its prefix keys/values
        if "prefix_provider" not in vars(attention):
            raise TypeError(f"{type(attention).__name__} has no prefix_provider hook; prefix tuning cannot attach to it")
        attention.add_module(SITE_ATTR, site)
        attention.prefix_provider = site.native_provider
        return site
    config = getattr(attention, "config", None)
    if config is None or not hasattr(config, "_attn_implementation"):
        raise TypeError(
            f"{type(attention).__name__} is not an HF attention (with .config); prefix tuning cannot attach to it"
        )
    implementation = config._attn_implementation or "eager"
    if implementation not in SUPPORTED_ATTENTION:
        raise ValueError(
            f"prefix tuning needs attn_implementation in {SUPPORTED_ATTENTION}, the model uses {implementation!r}; "
            "load the model with attn_implementation='sdpa' or 'eager'"
        )
    site.base_implementation = implementation
    private = copy.copy(config)  # only this module reads it; the model's masks stay as they were
    private._attn_implementation_internal = PREFIX_ATTENTION
    attention.config = private
    attention.add_module(SITE_ATTR, site)
    return site


def target_attention_names(model: nn.Module, config: PrefixConfig, targets: ModelTargets) -> list[str]:
    """Attention modules that get prefixes, encoder first (roles the family lacks are skipped)."""
    patterns = []
    if config.encoder_self_attention:
        patterns.append(targets.encoder_self_attention)
    if config.decoder_self_attention and targets.decoder_self_attention is not None:
        patterns.append(targets.decoder_self_attention)
    if config.cross_attention:
        patterns.append(targets.cross_attention)
    if not patterns:
        raise ValueError("prefix: this family has none of the attentions the config enables")
    return [name for name, _ in find_modules(model, patterns)]


def apply(model: nn.Module, config: PrefixConfig, targets: ModelTargets, adapter_name: str = "default") -> None:
    """Add prefix adapter ``adapter_name`` to the targeted attentions (sites installed once).

    The new adapter becomes active when no adapter was active before, as with LoRA.
    """
    if not isinstance(config, PrefixConfig):
        raise TypeError(f"config must be a PrefixConfig, got {type(config).__name__}")
    was_active = active_adapters(model) if adapter_names(model) else []
    names = target_attention_names(model, config, targets)
    sites = [_install_site(model.get_submodule(n), targets.prefix_hook) for n in names]
    like = next(model.parameters())
    mlp = None
    if config.reparameterize:
        mlp = PrefixMLP(config, [s.width for s in sites]).to(device=like.device, dtype=like.dtype)
        holder = getattr(model, REPARAM_ATTR, None)
        if holder is None:
            holder = PrefixReparameterisation()
            model.add_module(REPARAM_ATTR, holder)
        if adapter_name in holder.mlps:
            raise ValueError(f"prefix adapter {adapter_name!r} already exists")
        holder.mlps[adapter_name] = mlp
    for index, site in enumerate(sites):
        site.add_prefix(adapter_name, config, mlp, index, like)
    set_active_adapters(model, was_active or [adapter_name])


def prefix_sites(model: nn.Module) -> list[tuple[str, PrefixSite]]:
    """(name, site) for every attention with prefixes."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PrefixSite)]


def fold_reparameterisation(model: nn.Module, adapter_name: str) -> None:
    """Turn a reparameterised adapter into plain prefixes (same outputs, no MLP left)."""
    for _, site in prefix_sites(model):
        if adapter_name in site.adapter_names():
            site.fold(adapter_name)
    holder = getattr(model, REPARAM_ATTR, None)
    if holder is not None and adapter_name in holder.mlps:
        holder.delete_adapter(adapter_name)
