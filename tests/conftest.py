"""Shared fixtures: tiny models of every family, built once per session into a temp cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tiny models are built on first use under $MTADAPT_CACHE; a per-session folder keeps tests
# independent of the user's cache (subprocesses inherit it).
os.environ.setdefault("MTADAPT_CACHE", tempfile.mkdtemp(prefix="mtadapt-test-cache-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir():
    """Return a function family -> folder of the cached tiny model."""
    from mtadapt.models.loading import tiny_model_path

    return tiny_model_path


@pytest.fixture
def toy_dir() -> Path:
    from mtadapt.toy import toy_corpus_dir

    return toy_corpus_dir()
