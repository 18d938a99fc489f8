"""Marian-native model family: Marian-nmt transformers (Bergamot `.bin`, float32 `.npz`) in PyTorch.

    model, tokenizer = load_bergamot("bergamot:pt-en")
    batch = tokenizer(["No princípio criou Deus os céus e a terra."])
    print(tokenizer.decode_batch(model.generate(**batch)))

Name patterns for methods that target modules (LoRA, adapters), as in HF's Marian:
`self_attn.{q,k,v,out}_proj`, `encoder_attn.{q,k,v,out}_proj`, `fc1`, `fc2`, `ssru.W`, `ssru.Wf`.
"""

from .bergamot import available_models, load_bergamot, resolve
from .binary import MarianCheckpoint, MarianFormatError, read_marian, read_marian_bin, read_marian_npz
from .model import MarianNativeConfig, MarianNativeModel
from .tokenizer import MarianSentencePieceTokenizer

# Module-name suffixes that adapter methods may target by default in this family.
DEFAULT_TARGET_MODULES = ("q_proj", "v_proj")

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "MarianCheckpoint",
    "MarianFormatError",
    "MarianNativeConfig",
    "MarianNativeModel",
    "MarianSentencePieceTokenizer",
    "available_models",
    "load_bergamot",
    "read_marian",
    "read_marian_bin",
    "read_marian_npz",
    "resolve",
]
