"""Where the methods attach, per model family.

A method (LoRA, adapters, prefix tuning...) never imports a family: it receives a
`ModelTargets` and finds modules by these regular expressions, matched with
`re.fullmatch` against names from `model.named_modules()`.

Layout of the families we know (one layer shown):

  BART-like (mBART-50, M2M100/NLLB, Marian, Marian-native):
    *.encoder.layers.N.self_attn.{q,k,v,out}_proj      fc1, fc2
    *.decoder.layers.N.self_attn.{q,k,v,out}_proj      (Marian-native SSRU: .ssru.{W,Wf})
    *.decoder.layers.N.encoder_attn.{q,k,v,out}_proj   fc1, fc2
  T5:
    encoder.block.N.layer.0.SelfAttention.{q,k,v,o}    layer.1.DenseReluDense.{wi,wo}
    decoder.block.N.layer.0.SelfAttention.{q,k,v,o}
    decoder.block.N.layer.1.EncDecAttention.{q,k,v,o}  layer.2.DenseReluDense.{wi,wo}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How prefix tuning reaches a family's attention: through transformers' AttentionInterface
# (HF models), or the `prefix_provider` hook of mtadapt's own Marian attention.
PrefixHook = Literal["attention_interface", "prefix_provider"]


@dataclass(frozen=True)
class ModelTargets:
    """Module-name patterns (regex, `re.fullmatch`) for one family.

    Attributes:
        lora_default: Linear layers LoRA wraps by default (query and value projections,
            in self- and cross-attention, as HF PEFT's defaults match them).
        all_linear: Every attention and FFN linear of encoder and decoder (not the output head).
        encoder_self_attention: Encoder self-attention modules (prefix tuning).
        decoder_self_attention: Decoder self-attention modules; None when the decoder has none
            (Marian-native SSRU decoders).
        cross_attention: Decoder cross-attention modules.
        attention_output: Output projections of self-attention (encoder and decoder); a
            Houlsby adapter goes on their output, before the residual add.
        cross_attention_output: Output projections of cross-attention.
        ffn_output: Last linear of each FFN; Houlsby and Pfeiffer adapters go on its output.
        encoder_embedding: Attribute path of the encoder's token embedding (prompt tuning).
        prefix_hook: How prefix tuning attaches to the attention modules above (`PrefixHook`).
    """

    lora_default: tuple[str, ...]
    all_linear: tuple[str, ...]
    encoder_self_attention: str
    decoder_self_attention: str | None
    cross_attention: str
    attention_output: str
    cross_attention_output: str
    ffn_output: str
    encoder_embedding: str
    prefix_hook: PrefixHook = "attention_interface"


BART_LIKE = ModelTargets(
    lora_default=(r".*(self_attn|encoder_attn)\.(q_proj|v_proj)",),
    all_linear=(r".*(self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)", r".*layers\.\d+\.(fc1|fc2)"),
    encoder_self_attention=r".*encoder\.layers\.\d+\.self_attn",
    decoder_self_attention=r".*decoder\.layers\.\d+\.self_attn",
    cross_attention=r".*decoder\.layers\.\d+\.encoder_attn",
    attention_output=r".*layers\.\d+\.self_attn\.out_proj",
    cross_attention_output=r".*decoder\.layers\.\d+\.encoder_attn\.out_proj",
    ffn_output=r".*layers\.\d+\.fc2",
    encoder_embedding="model.encoder.embed_tokens",
)

T5 = ModelTargets(
    lora_default=(r".*(SelfAttention|EncDecAttention)\.(q|v)",),
    all_linear=(r".*(SelfAttention|EncDecAttention)\.(q|k|v|o)", r".*DenseReluDense\.(wi|wi_0|wi_1|wo)"),
    encoder_self_attention=r"encoder\.block\.\d+\.layer\.0\.SelfAttention",
    decoder_self_attention=r"decoder\.block\.\d+\.layer\.0\.SelfAttention",
    cross_attention=r"decoder\.block\.\d+\.layer\.1\.EncDecAttention",
    attention_output=r".*block\.\d+\.layer\.0\.SelfAttention\.o",
    cross_attention_output=r"decoder\.block\.\d+\.layer\.1\.EncDecAttention\.o",
    ffn_output=r".*DenseReluDense\.wo",
    encoder_embedding="encoder.embed_tokens",
)

# Marian-native (Bergamot students): SSRU decoder, so no decoder self-attention.
MARIAN_NATIVE = ModelTargets(
    lora_default=BART_LIKE.lora_default,
    all_linear=BART_LIKE.all_linear + (r".*decoder\.layers\.\d+\.ssru\.(W|Wf)",),
    encoder_self_attention=r".*encoder\.layers\.\d+\.self_attn",
    decoder_self_attention=None,
    cross_attention=BART_LIKE.cross_attention,
    attention_output=BART_LIKE.attention_output,
    cross_attention_output=BART_LIKE.cross_attention_output,
    ffn_output=BART_LIKE.ffn_output,
    encoder_embedding="model.encoder.embed_tokens",
    prefix_hook="prefix_provider",
)
