"""Inference: everything that turns source token ids into target token ids.

- `generation`: batched, length-sorted generation with the PyTorch model (HF `generate` or
  the Marian-native search), the one translation path of translate, evaluate, training-time
  evaluation, back-translation, compare and serve.
- `sharded`: corpus-scale translation: streamed windows, resumable shards, ranks.
- `precision`: which precision a device runs natively; the default inference precision.
"""
