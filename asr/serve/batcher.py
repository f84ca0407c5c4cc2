"""Requests that arrive together share a forward pass.

One thread owns the network. Each request hands it a list of waves (one, or a long file's windows) and
awaits their logits; the thread takes the first waiting request, then every other request already waiting
and any that arrive within `wait_s`, up to `max_seconds` of audio, and runs them all through `emissions`
(which packs similar lengths into padded batches, as `asr transcribe` does). Per-request results are handed back to
the event loop, which never runs the network itself.
"""

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from asr.audio import SAMPLE_RATE


@dataclass
class Job:
    waves: list[np.ndarray]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    seconds: float = field(init=False)

    def __post_init__(self):
        self.seconds = sum(len(w) for w in self.waves) / SAMPLE_RATE

    def settle(self, result=None, error: BaseException | None = None):
        def set_once():  # the client may have gone (its future cancelled) while the network ran
            if not self.future.done():
                self.future.set_exception(error) if error else self.future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(set_once)
        except RuntimeError:  # the event loop has closed: the server is stopping, nobody waits
            pass


class Batcher:
    """`await batcher.emissions(waves)` -> one (T', V) logits array per wave, computed in the batcher's thread.

    emissions: the model's function from a list of 16 kHz waves to their logits (asr.transcribe.Model.emissions).
    wait_s: how long the first request of a batch waits for others to arrive (0: only those already waiting).
    batching: False runs one request at a time.
    max_seconds: audio gathered into one batch at most (a request longer than this runs alone)."""

    def __init__(self, emissions, wait_s: float = 0.02, max_seconds: float = 240.0, batching: bool = True):
        self.run_network, self.wait_s, self.max_seconds, self.batching = emissions, wait_s, max_seconds, batching
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.loop, name="asr-batcher", daemon=True)
        self.batches = 0  # forward rounds run, and the requests they served: the batching actually achieved
        self.requests = 0

    def start(self) -> "Batcher":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=30)

    async def emissions(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        if not self.thread.is_alive():
            raise RuntimeError("the network thread has stopped: restart the server")
        loop = asyncio.get_running_loop()
        job = Job(waves, loop, loop.create_future())
        self.jobs.put(job)
        return await job.future

    def loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            batch = [job]
            deadline, seconds = time.monotonic() + self.wait_s, job.seconds
            while self.batching and seconds < self.max_seconds:
                try:
                    more = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:  # stop: finish this batch first
                    self.jobs.put(None)
                    break
                batch.append(more)
                seconds += more.seconds
            try:
                self.run(batch)
            except BaseException as e:  # a bug here must not leave requests waiting forever
                for job in batch:
                    job.settle(error=e if isinstance(e, Exception) else RuntimeError(repr(e)))
                if not isinstance(e, Exception):
                    raise

    def run(self, batch: list[Job]) -> None:
        batch = [job for job in batch if not job.future.done()]  # clients that gave up cost nothing
        if not batch:
            return
        try:
            logits = self.run_network([w for job in batch for w in job.waves])
        except Exception as e:  # one request's audio broke the batch: run each alone, so only it fails
            if len(batch) == 1:
                batch[0].settle(error=e)
            else:
                for job in batch:
                    self.run([job])
            return
        self.batches += 1
        self.requests += len(batch)
        start = 0
        for job in batch:
            job.settle(logits[start : start + len(job.waves)])
            start += len(job.waves)
