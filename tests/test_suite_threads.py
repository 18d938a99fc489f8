"""The test suite itself: each pytest-xdist worker runs torch on its share of the cores."""

from __future__ import annotations

import os

import pytest


def test_each_worker_gets_its_share_of_the_cores():
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        pytest.skip("not run under pytest-xdist workers")
    if os.environ["MTADAPT_TEST_OMP_GIVEN"]:
        pytest.skip(f"OMP_NUM_THREADS={os.environ['MTADAPT_TEST_OMP_GIVEN']} was given explicitly")
    import torch

    # two workers on two cores with two threads each spin-wait on each other (10-50x slower)
    assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // int(workers))
