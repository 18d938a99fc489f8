"""Shared fixtures: tiny models of every family, built once per session into a temp cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tiny models are built on first use under $MTADAPT_CACHE; a per-session folder keeps tests
# independent of the user's cache (subprocesses inherit it). pytest-xdist workers share one
# folder per test run (PYTEST_XDIST_TESTRUNUID is the same in every worker), so each tiny model
# is built once per session (`tiny_model_path` locks while it builds).
_run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _run_id:
    _cache = Path(tempfile.gettempdir()) / f"mtadapt-test-cache-{_run_id}"
    _cache.mkdir(exist_ok=True)
    os.environ.setdefault("MTADAPT_CACHE", str(_cache))
else:
    os.environ.setdefault("MTADAPT_CACHE", tempfile.mkdtemp(prefix="mtadapt-test-cache-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# pytest-xdist workers share the cores: each gets its share of intra-op threads (torch would
# otherwise start one thread per core in every worker, and the workers' threads would spin-wait
# on each other: 10-50x slower tests, measured). Subprocesses the tests start inherit it. Set
# in the workers only: the controller imports this file first and the workers inherit its
# environment, so a value set there would shadow the workers' share. An explicit
# OMP_NUM_THREADS wins; a run without workers keeps torch's own choice.
os.environ.setdefault("MTADAPT_TEST_OMP_GIVEN", os.environ.get("OMP_NUM_THREADS", ""))  # the user's, if any
if "PYTEST_XDIST_WORKER" in os.environ:
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))


@pytest.fixture(scope="session")
def tiny_model_dir():
    """Return a function family -> folder of the cached tiny model."""
    from mtadapt.models.loading import tiny_model_path

    return tiny_model_path


@pytest.fixture
def toy_dir() -> Path:
    from mtadapt.toy import toy_corpus_dir

    return toy_corpus_dir()


# ---------------------------------------------------------------------------------------
# The host is a test input: `host_profile` runs a test once per CPU kind the precision
# policy distinguishes (inference.precision.HOST_PROFILES), through $MTADAPT_CPU_FLAGS, which
# subprocesses (CLI, servers) inherit.

PROFILE_DEFAULTS = {"avx2": "float32", "avx512": "float32", "avx512-bf16": "bfloat16", "amx": "bfloat16"}


def pytest_report_header(config):
    from mtadapt.inference.precision import default_inference_dtype, describe_cpu, host_profile

    return f"mtadapt host profile: {host_profile()} (default precision {default_inference_dtype('cpu')}; {describe_cpu()})"


@pytest.fixture(params=list(PROFILE_DEFAULTS))
def host_profile(request, monkeypatch):
    """The name of a host profile this test runs under; `PROFILE_DEFAULTS[name]` is its default
    precision."""
    from mtadapt.inference.precision import CPU_FLAGS_ENV, HOST_PROFILES

    monkeypatch.setenv(CPU_FLAGS_ENV, HOST_PROFILES[request.param])
    return request.param


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test (engine comparisons and timings on the shared cores)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
