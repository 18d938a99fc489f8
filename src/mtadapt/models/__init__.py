"""Model families, language handling, loading, tiny builders."""

# Label id that every loss ignores: the padding of target sequences (torch.nn.CrossEntropyLoss's
# and Hugging Face's convention). Defined here, the lowest layer that computes a loss (the
# Marian-native model); the collator (mtadapt.data.batching), the trainer and dev scoring use it.
LABEL_PAD_ID = -100
