"""Marian-native model family: Marian-nmt transformers (Bergamot `.bin`, float32 `.npz`) in PyTorch.

    model, tokenizer = load_bergamot("bergamot:pt-en")
    batch = tokenizer(["No princípio criou Deus os céus e a terra."])
    print(tokenizer.decode_batch(model.generate(**batch)))

Name patterns for methods that target modules (LoRA, adapters), as in HF's Marian:
`self_attn.{q,k,v,out}_proj`, `encoder_attn.{q,k,v,out}_proj`, `fc1`, `fc2`, `ssru.W`, `ssru.Wf`.
"""

from .bergamot import available_models, load_bergamot, resolve
from .binary import MarianCheckpoint, MarianFormatError, read_marian, read_marian_bin, read_marian_npz
from .convert import load_marian, save_marian_npz
from .model import MarianNativeConfig, MarianNativeModel
from .tokenizer import MarianSentencePieceTokenizer

__all__ = [
    "MarianCheckpoint",
    "MarianFormatError",
    "MarianNativeConfig",
    "MarianNativeModel",
    "MarianSentencePieceTokenizer",
    "available_models",
    "load_bergamot",
    "load_marian",
    "read_marian",
    "read_marian_bin",
    "read_marian_npz",
    "resolve",
    "save_marian_npz",
]
