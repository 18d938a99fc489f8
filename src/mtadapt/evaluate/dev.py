"""Dev-set scores during and after training: BLEU/chrF by generation, teacher-forced loss.

    evaluate_dev(model, codec, dev)   one direction: {"bleu", "chrf", "loss"}
    evaluate_task(model, task)        every direction with a dev set; multi-pair runs add
                                      "<name>/bleu", ... per direction, and "bleu", "chrf",
                                      "loss" are the macro average over trained directions
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtadapt.config import RunConfig
from mtadapt.data.batching import LABEL_PAD_ID, collate
from mtadapt.data.prepare import TokenizedPairs
from mtadapt.data.tasks import TaskData
from mtadapt.inference.generation import translate_ids
from mtadapt.evaluate.metrics import corpus_scores
from mtadapt.models.languages import PairCodec


@torch.inference_mode()
def dev_loss(model: nn.Module, codec: PairCodec, dev: TokenizedPairs, n: int, batch_size: int = 32) -> float:
    """Teacher-forced cross-entropy per target token on the first `n` dev pairs."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for start in range(0, n, batch_size):
        pairs = [(dev.src_ids[i], dev.tgt_ids[i]) for i in range(start, min(n, start + batch_size))]
        batch = {k: v.to(device) for k, v in collate(pairs, codec.pad_id).items()}
        logits = model(**batch).logits  # (batch, tgt_len, vocab)
        labels = batch["labels"]
        count = int((labels != LABEL_PAD_ID).sum())
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=LABEL_PAD_ID)
        total += float(loss) * count
        tokens += count
    model.train(was_training)
    return total / max(tokens, 1)


def evaluate_dev(model: nn.Module, codec: PairCodec, dev: TokenizedPairs, config: RunConfig) -> dict[str, float]:
    """Dev BLEU and chrF by generation, and teacher-forced dev loss, on the first
    `data.max_dev_sentences` pairs."""
    n = min(len(dev), config.data.max_dev_sentences)
    outputs = translate_ids(model, codec, dev.src_ids[:n], config.generation)
    hyps = codec.decode([o[0] for o in outputs])
    scores = corpus_scores(hyps, dev.tgt[:n])
    return {"bleu": scores["BLEU"].score, "chrf": scores["chrF"].score, "loss": dev_loss(model, codec, dev, n)}


def evaluate_task(model: nn.Module, task: TaskData, config: RunConfig) -> dict[str, float]:
    """Dev scores of every direction with a dev set (see the module docstring). Held-out
    directions are scored under their names but left out of the average, which is what early
    stopping reads."""
    scores: dict[str, float] = {}
    trained_scores: list[dict[str, float]] = []
    for pair in task.pairs:
        if pair.dev is None or not len(pair.dev):
            continue
        with task.pair_routing(model, pair):
            one = evaluate_dev(model, pair.codec, pair.dev, config)
        if task.multi_pair:
            scores.update({f"{pair.name}/{k}": v for k, v in one.items()})
        if not pair.held_out:
            trained_scores.append(one)
    for key in trained_scores[0] if trained_scores else []:
        scores[key] = float(np.mean([s[key] for s in trained_scores]))
    return scores
