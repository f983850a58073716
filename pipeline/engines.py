"""Engines run a stage's tasks: the local process pool or Ray. Both get the same task list, the
task functions write the same parts and markers, so the output is byte-identical and a build
started on one engine resumes on the other (docs/cluster.md).

An engine only executes `fn(*args)` for a list of argument tuples and reports each finished
call; what a task does, where it writes and how it is resumed is the runner's business.
"""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Sequence

from .config import ConfigError

ENGINES = ("local", "ray")


class Engine:
    name = "engine"

    def map(self, fn: Callable, calls: Sequence[tuple], done: Callable[[object], None]) -> None:
        """Run fn(*call) for every call; done(result) as each finishes (any order)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalEngine(Engine):
    """Inline for one worker, else a process pool of `workers` processes."""
    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))

    def map(self, fn, calls, done):
        if self.workers > 1 and len(calls) > 1:
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            with ProcessPoolExecutor(max_workers=self.workers, initializer=_init_worker, initargs=(threads,)) as pool:
                try:
                    for f in as_completed([pool.submit(fn, *c) for c in calls]):
                        done(f.result())
                except BrokenProcessPool:
                    # Ctrl-C ends the workers at once; on a busy machine the driver can see a
                    # dead worker before its own SIGINT arrives: give it a moment to arrive (it
                    # then ends as an interruption), else this was a real crash
                    pool.shutdown(wait=False, cancel_futures=True)
                    time.sleep(1.0)
                    raise
                except KeyboardInterrupt:  # leaving the pool must not start the tasks still queued
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        else:
            for c in calls:
                done(fn(*c))


def _init_worker(threads: int) -> None:
    """In a pool worker: the threads its tasks may use (pipeline.embed.task_threads reads it).
    Ctrl-C reaches every process of the terminal's group; a worker then ends at once and
    quietly (the driver prints the one line), since what it was writing is a temp file that a
    resumed run deletes."""
    os.environ["TURNFORGE_TASK_THREADS"] = str(threads)
    signal.signal(signal.SIGINT, _exit_quietly)


def _exit_quietly(signum, frame) -> None:
    os._exit(128 + signum)


class RayEngine(Engine):
    """Ray tasks, one CPU each, retried by Ray when a worker dies or a task raises.

    Without an address a local Ray is started (quiet, offline, `workers` CPUs) and stopped
    again at close; with one, the driver joins that cluster. The output path must be a
    filesystem every node sees."""
    name = "ray"

    def __init__(self, workers: int = 1, address: str | None = None, retries: int = 3):
        try:
            import ray
        except ImportError:
            raise ConfigError("engine ray: Ray is not installed (pip install 'turnforge[ray]')") from None
        for k, v in (("RAY_USAGE_STATS_ENABLED", "0"), ("RAY_AUTH_MODE", "disabled"),
                     ("RAY_DEDUP_LOGS", "0")):
            os.environ.setdefault(k, v)
        self.ray, self.retries = ray, retries
        self.started = not ray.is_initialized()
        if self.started:
            kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address:
                ray.init(address=address, **kw)
            else:  # "local": a new Ray of our own, never a cluster `ray start` left on this machine
                ray.init(address="local", num_cpus=max(1, int(workers)), **kw)

    def map(self, fn, calls, done):
        ray = self.ray
        task = ray.remote(num_cpus=1, max_retries=self.retries, retry_exceptions=True)(fn)
        pending = [task.remote(*c) for c in calls]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done(ray.get(ready[0]))  # re-raises the task's error once its retries are spent

    def close(self):
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


def get_engine(name: str = "local", workers: int = 1, address: str | None = None) -> Engine:
    if name not in ENGINES:
        raise ConfigError(f"engine {name!r}: choose from {ENGINES}")
    if name == "local":
        if address:
            raise ConfigError("--ray-address needs --engine ray")
        return LocalEngine(workers)
    return RayEngine(workers, address)
