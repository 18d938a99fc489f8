"""The test suite itself: each pytest-xdist worker runs torch on its share of the cores, and
`--dist loadgroup` really keeps a group on one worker (its module fixtures built once)."""

from __future__ import annotations

import os

import pytest


def _under_workers() -> str:
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        pytest.skip("not run under pytest-xdist workers")
    return workers


def test_each_worker_gets_its_share_of_the_cores():
    workers = _under_workers()
    if os.environ["MTADAPT_TEST_OMP_GIVEN"]:
        pytest.skip(f"OMP_NUM_THREADS={os.environ['MTADAPT_TEST_OMP_GIVEN']} was given explicitly")
    import torch

    # two workers on two cores with two threads each spin-wait on each other (10-50x slower)
    assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // int(workers))


@pytest.mark.xdist_group("suite-setup")
def test_xdist_groups_reach_the_scheduler(request):
    # pytest-xdist 3.8 groups by a "@group" suffix it writes into the node id; pytest 9.2's
    # structured node ids drop it (pytest-xdist#1386), and every group then spreads over the
    # workers, each rebuilding the group's module fixtures (~60 s each for the toy runs).
    _under_workers()
    if request.config.getvalue("dist") != "no" or not request.config.getvalue("loadgroup"):
        pytest.skip("not run with --dist loadgroup")
    assert request.node.nodeid.endswith("@suite-setup"), request.node.nodeid
