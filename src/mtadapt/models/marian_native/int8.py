"""int8 inference for Marian-native models with the int8 weights a Bergamot model ships.

`to_int8(model)` swaps every matrix of the network (attention, FFN, SSRU) for an
`Int8Linear` and gives the model an `Int8OutputLayer`, both built from the shipped
`q` (int8) and `multiplier` of each matrix (`model.marian_quantized`, kept by `load_marian`):

    Int8Linear(x) = dequant(int8(x) @ q^T) + b,   W = q / multiplier  (per-tensor scale 1/multiplier)

through fbgemm's dynamic quantised linear (`torch.ops.quantized.linear_dynamic`): the weight
is used exactly as shipped (no second quantisation); the activation is quantised per call to
uint8 over its own range (Marian's engine uses a fixed, calibrated range instead:
`*_QuantMultA`). fbgemm was the fastest int8 kernel PyTorch has on this CPU (AVX2), about
2x float32 at these shapes; `torch._int_mm` on CPU was 20-40x slower than float32 (see
benchmarks/int8_speed.py --kernels).

A matrix whose float weight no longer equals its shipped q / multiplier (full fine-tuning,
BitFit, a merged LoRA) is quantised again with Marian's rule (multiplier = 127 / max|W|);
`Int8Report` counts those. Unmerged LoRA adapters stay in float around the int8 base layer
(`LoraLinear.base_layer` becomes the `Int8Linear`). The output layer is int8 too: the full
vocabulary, or the rows of a sentence batch's shortlist (`Int8OutputLayer.rows`).
Inference only: no gradients flow through the int8 layers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .binary import QuantizedMatrix
from .convert import name_map
from .model import MarianNativeModel

# reduce_range: 7-bit activations, so that fbgemm's AVX2 u8 x s8 pair sums cannot saturate int16
_REDUCE_RANGE = True


def _quantized_weight(q: torch.Tensor, multiplier: float) -> torch.Tensor:
    """(out, in) int8 -> a per-tensor qint8 tensor with scale 1 / multiplier."""
    with warnings.catch_warnings():  # quantized tensor types are deprecated, fbgemm's prepack still takes them
        warnings.simplefilter("ignore", UserWarning)
        return torch._make_per_tensor_quantized_tensor(q.contiguous(), 1.0 / multiplier, 0)


def _marian_quantize(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Marian's intgemm8 rule: multiplier = 127 / max|w|, q = clip(round(w * multiplier))."""
    peak = float(w.detach().abs().max())
    multiplier = float(torch.tensor(127.0 / peak if peak > 0 else 1.0, dtype=torch.float32))
    q = torch.clamp(torch.round(w.detach().float() * multiplier), -127, 127).to(torch.int8)
    return q, multiplier


def _linear_int8(x: torch.Tensor, packed) -> torch.Tensor:
    """x (..., in) float32 -> (..., out) through a prepacked int8 weight."""
    flat = x.reshape(-1, x.shape[-1]).float()
    y = torch.ops.quantized.linear_dynamic(flat, packed, _REDUCE_RANGE)
    return y.reshape(*x.shape[:-1], y.shape[-1])


class Int8Linear(nn.Module):
    """A linear layer with int8 weights: y = x (q / multiplier)^T + b (see the module docstring).

    Keeps the float `weight` and `bias` (W = q / multiplier exactly, for code that reads
    them, e.g. LoRA's dtype checks); forward uses only the packed int8 weight.
    """

    def __init__(self, q: torch.Tensor, multiplier: float, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.multiplier = multiplier
        self.register_buffer("weight", weight.detach(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach(), persistent=False)
        self._packed = torch.ops.quantized.linear_prepack(_quantized_weight(q, multiplier),
                                                          None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear_int8(x, self._packed).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, multiplier={self.multiplier:.4g}"


class Int8OutputLayer:
    """The tied output layer in int8: logits = hidden (q / multiplier)^T + bias, over the
    whole vocabulary or over shortlist rows `ids` (U,): q[ids], bias[ids]."""

    def __init__(self, q: torch.Tensor, multiplier: float, bias: torch.Tensor):
        self.q, self.multiplier, self.bias = q.contiguous(), multiplier, bias.detach().float()
        self._full = None

    def rows(self, ids: torch.Tensor):
        """Prepacked weight of vocabulary rows `ids` (U,) (one per shortlist batch)."""
        return torch.ops.quantized.linear_prepack(
            _quantized_weight(self.q.index_select(0, ids), self.multiplier), self.bias.index_select(0, ids))

    def logits(self, hidden: torch.Tensor, packed=None) -> torch.Tensor:
        """hidden (..., D) -> (..., V) (or (..., U) with `packed` from `rows`)."""
        if packed is None:
            if self._full is None:
                self._full = torch.ops.quantized.linear_prepack(_quantized_weight(self.q, self.multiplier), self.bias)
            packed = self._full
        return _linear_int8(hidden, packed)


@dataclass
class Int8Report:
    """What `to_int8` did: matrices using the shipped int8 values, quantised again (their
    weights changed since loading), and the output layer's source."""

    shipped: int
    requantized: list[str]
    output_layer: str  # "shipped" or "requantized"


def _shipped_or_requantized(
    name: str, weight: torch.Tensor, shipped: dict[str, QuantizedMatrix], transpose: bool
) -> tuple[torch.Tensor, float, bool]:
    """(q (out, in), multiplier, True if shipped) for a module weight (out, in)."""
    matrix = shipped.get(name)
    if matrix is not None:
        q = torch.from_numpy(matrix.q.T.copy() if transpose else matrix.q.copy())
        if q.shape == weight.shape and torch.equal(q.float() / torch.tensor(matrix.multiplier, dtype=torch.float32),
                                                   weight.detach().float()):
            return q, matrix.multiplier, True
    q, multiplier = _marian_quantize(weight)
    return q, multiplier, False


def to_int8(model: MarianNativeModel) -> Int8Report:
    """Run `model`'s matrices and output layer in int8, in place (see the module docstring).

    Raises:
        ValueError: the model is already int8, or a matrix's module is neither a linear
            layer nor an adapter wrapping one (named).
    """
    if getattr(model, "int8_output", None) is not None:
        raise ValueError("the model already runs in int8")
    shipped: dict[str, QuantizedMatrix] = getattr(model, "marian_quantized", None) or {}
    modules = dict(model.named_modules())
    used, requantized = 0, []
    for marian, key, layout in name_map(model.config):
        if layout != "matrix":
            continue
        path = key.removesuffix(".weight")
        module = modules[path]
        holder, attribute = None, None
        if isinstance(module, nn.Linear):
            parent, _, attribute = path.rpartition(".")
            holder = modules[parent]
        elif isinstance(getattr(module, "base_layer", None), nn.Linear):  # an adapter around it (LoRA)
            holder, attribute, module = module, "base_layer", module.base_layer
        else:
            raise ValueError(f"cannot run {path} ({type(module).__name__}) in int8: not a linear layer or LoRA around one")
        q, multiplier, as_shipped = _shipped_or_requantized(marian, module.weight, shipped, transpose=True)
        setattr(holder, attribute, Int8Linear(q, multiplier, module.weight, module.bias))
        used += as_shipped
        if not as_shipped:
            requantized.append(marian)
    embedding = model.model.shared.weight
    q, multiplier, as_shipped = _shipped_or_requantized("Wemb", embedding, shipped, transpose=False)
    model.int8_output = Int8OutputLayer(q, multiplier, model.final_logits_bias[0])
    return Int8Report(used, requantized, "shipped" if as_shipped else "requantized")
