"""The one generation thread: a bounded queue of jobs and control actions, batch formation,
deadlines, and one-at-a-time retries of a failed batch.

Batch formation, each time the worker is free:

    head = first queued job whose deadline has not passed   (expired ones answered 503)
    wait until head has waited max_wait, or a full batch is queued
    key  = (pair, num_beams, max_length_factor, num_return, head.group)  # group: "routable" for
                                                  # LoRA/bottleneck/base, else the adapter name
    batch = [head] + queued jobs with the same key, in arrival order, while
            sentences <= max_batch_sentences and sentences * longest <= max_batch_tokens
            and distinct adapters <= max_adapters
    stop scanning at a queued control action (load/unload): jobs queued before it are
    served first, the action runs next, jobs queued after it see its effect

Failure: a batch that raises is retried one job at a time; only the job that fails again is
answered with the error. The worker never dies from a job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    """One request's sentences, tokenized, on their way through the worker.

    Attributes:
        src_ids: token ids of each text.
        adapter: adapter name, or None for the base model.
        pair: (source, target) public codes.
        num_beams: beam size.
        max_length_factor: output length limit factor.
        deadline: `time.monotonic()` after which the job is answered 503 instead of run.
        group: batching group: "routable" (base, LoRA, bottleneck: mixed in one batch) or
            the adapter's own name (prefix, prompt; or every adapter without cross_adapter).
        started: `time.monotonic()` when its batch began (set by the worker).
        finished: when its batch ended.
        num_return: hypotheses returned per text, best first (1 + LibreTranslate's
            `alternatives`); more than 1 needs num_beams >= num_return.
    """

    src_ids: list[list[int]]
    adapter: str | None
    pair: tuple[str, str]
    num_beams: int
    max_length_factor: float
    deadline: float
    group: str = "routable"
    started: float = 0.0
    finished: float = 0.0
    num_return: int = 1




class QueueFull(Exception):
    """The queue holds `max_queue` sentences; answer 429 with Retry-After."""


class DeadlineExceeded(Exception):
    """The job was still queued at its deadline; answer 503."""


class WorkerStopped(Exception):
    """The worker is shutting down; answer 503."""


@dataclass
class _Queued:
    job: Job
    future: Future
    enqueued: float
    sentences: int
    longest: int


@dataclass
class _Control:
    action: Callable[[], Any]
    future: Future = field(default_factory=Future)


class BatchWorker:
    """Owns the model through `run_batch`; everything else only queues.

    Args:
        run_batch: jobs -> per job, per text, its n-best output ids (`Engine.generate`).
        max_queue: most sentences waiting.
        max_batch_sentences, max_batch_tokens, max_wait_s: batch formation (module docstring).
        max_adapters: most distinct adapters in one batch (the LRU cap; 0 = any).
        metrics: optional object with `batch(jobs, sentences, seconds)`, `batch_failed()`,
            `queue_depth(sentences)`.
    """

    def __init__(self, run_batch: Callable[[list[Job]], list[list[list[int]]]], max_queue: int, max_batch_sentences: int, max_batch_tokens: int, max_wait_s: float,
                 max_adapters: int = 0, metrics: Any = None) -> None:
        self.run_batch = run_batch
        self.max_queue, self.max_batch_sentences, self.max_batch_tokens = max_queue, max_batch_sentences, max_batch_tokens
        self.max_wait_s, self.max_adapters, self.metrics = max_wait_s, max_adapters, metrics
        self._items: list[_Queued | _Control] = []
        self._depth = 0  # sentences in _items
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mtadapt-generation", daemon=True)
        self.busy_since: float | None = None

    # ---- event-loop side -----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Answer what is still queued with WorkerStopped and end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    @property
    def queue_depth(self) -> int:
        return self._depth

    def submit(self, job: Job) -> Future:
        """Queue a job; its future yields per-text output ids.

        Raises:
            QueueFull: the queue would exceed `max_queue` sentences.
            WorkerStopped: shutting down.
        """
        n = len(job.src_ids)
        with self._cond:
            if not self.alive:
                raise WorkerStopped("the server is shutting down")
            if self._depth + n > self.max_queue:
                raise QueueFull(f"the queue holds {self._depth} of {self.max_queue} sentences")
            item = _Queued(job, Future(), time.monotonic(), n, max(len(s) for s in job.src_ids))
            self._items.append(item)
            self._depth += n
            self._report_depth()
            self._cond.notify_all()
        return item.future

    def control(self, action: Callable[[], Any]) -> Future:
        """Run `action()` on the worker thread after the jobs queued before it (load/unload)."""
        item = _Control(action)
        with self._cond:
            if not self.alive:
                raise WorkerStopped("the server is shutting down")
            self._items.append(item)
            self._cond.notify_all()
        return item.future

    # ---- worker thread ---------------------------------------------------------------------

    def _report_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth(self._depth)

    def _remove(self, item: _Queued) -> None:
        self._items.remove(item)
        self._depth -= item.sentences

    def _drop_dead(self) -> None:
        """Answer expired and cancelled jobs at the front (lock held)."""
        now = time.monotonic()
        for item in [i for i in self._items if isinstance(i, _Queued)]:
            if item.future.cancelled():
                self._remove(item)
            elif item.job.deadline <= now:
                self._remove(item)
                if item.future.set_running_or_notify_cancel():
                    item.future.set_exception(DeadlineExceeded("the request waited past its deadline"))

    def _key(self, item: _Queued) -> tuple:
        j = item.job
        return (j.pair, j.num_beams, j.max_length_factor, j.num_return, j.group)

    def _take(self) -> list[_Queued]:
        """Remove and return the next batch (lock held; the head is a job)."""
        head = self._items[0]
        assert isinstance(head, _Queued)
        key = self._key(head)
        batch, sentences, longest, adapters = [head], head.sentences, head.longest, {head.job.adapter}
        for item in self._items[1:]:
            if isinstance(item, _Control):
                break
            if self._key(item) != key:
                continue
            s, w = sentences + item.sentences, max(longest, item.longest)
            new = adapters | {item.job.adapter}
            if s > self.max_batch_sentences or s * w > self.max_batch_tokens or (
                self.max_adapters and len(new - {None}) > self.max_adapters
            ):
                continue
            batch.append(item)
            sentences, longest, adapters = s, w, new
        for item in batch:
            self._remove(item)
        self._report_depth()
        return [b for b in batch if b.future.set_running_or_notify_cancel()]

    def _full_batch_queued(self) -> bool:
        sentences = sum(i.sentences for i in self._items if isinstance(i, _Queued))
        return sentences >= self.max_batch_sentences or any(isinstance(i, _Control) for i in self._items)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    self._drop_dead()
                    if self._stopping:
                        self._fail_all()
                        return
                    if self._items:
                        break
                    self._cond.wait(timeout=0.5)  # wakes up to expire deadlines too
                head = self._items[0]
                if isinstance(head, _Control):
                    self._items.pop(0)
                    work: _Control | list[_Queued] = head
                else:
                    wait_until = head.enqueued + self.max_wait_s
                    while not self._stopping and time.monotonic() < wait_until and not self._full_batch_queued():
                        self._cond.wait(wait_until - time.monotonic())
                    self._drop_dead()
                    if not self._items or isinstance(self._items[0], _Control) or self._stopping:
                        continue
                    work = self._take()
            if isinstance(work, _Control):
                self._run_control(work)
            elif work:
                self._run(work)

    def _run_control(self, item: _Control) -> None:
        try:
            item.future.set_result(item.action())
        except Exception as err:  # reported to the admin request, never kills the worker
            item.future.set_exception(err)

    def _run(self, batch: list[_Queued]) -> None:
        self.busy_since = time.monotonic()
        start = time.perf_counter()
        for b in batch:
            b.job.started = self.busy_since
        try:
            outputs = self.run_batch([b.job for b in batch])
        except Exception as err:
            if self.metrics is not None:
                self.metrics.batch_failed()
            if len(batch) == 1:
                batch[0].future.set_exception(err)
            else:  # the failure may be one job's: retry each alone, fail only those that fail again
                for item in batch:
                    try:
                        item.job.started = time.monotonic()
                        out = self.run_batch([item.job])[0]
                        item.job.finished = time.monotonic()
                        item.future.set_result(out)
                    except Exception as single_err:
                        item.future.set_exception(single_err)
            self.busy_since = None
            return
        if self.metrics is not None:
            self.metrics.batch(len(batch), sum(b.sentences for b in batch), time.perf_counter() - start)
        now = time.monotonic()
        for item, out in zip(batch, outputs):
            item.job.finished = now
            item.future.set_result(out)
        self.busy_since = None

    def _fail_all(self) -> None:
        for item in self._items:
            if isinstance(item, _Queued) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(WorkerStopped("the server is shutting down"))
            elif isinstance(item, _Control) and not item.future.done():
                item.future.set_exception(WorkerStopped("the server is shutting down"))
        self._items.clear()
        self._depth = 0
