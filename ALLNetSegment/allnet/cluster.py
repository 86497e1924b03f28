"""Where the cases of a batch run: a Dask distributed cluster, started here or already running.

One case is one task (``allnet.cases.run_cases``); a worker is one process running one case
at a time (each case already uses every core it is given through torch and SimpleITK), so
``--workers N`` runs N cases at once. A worker that dies (killed, out of memory) fails only
its case; the others go on.

Why Dask distributed and not Ray: the cases are independent, coarse tasks (a minute or more
each) with small arguments and results, which any engine handles; Dask is pure Python
(dask + distributed with their dependencies: about 4 MB of wheels; Ray's wheel alone is
79 MB, with a native object store this workload does not use), gives
a standard ``concurrent.futures.Executor`` (``Client.get_executor``) that the batch loop
uses unchanged, and reaches SLURM, PBS, SGE and LSF through ``dask-jobqueue`` with the same
``--scheduler`` address. Ray gains nothing here: no shared large objects, no GPU-actor
scheduling needs beyond one case per worker.

On a cluster (not a dependency of ALLNet)::

    pip install dask-jobqueue
    python -c "from dask_jobqueue import SLURMCluster; c = SLURMCluster(cores=4, memory='8GB',
               processes=1); c.scale(jobs=20); print(c.scheduler_address); input()"
    allnet bids /data/bids /data/derivatives/allnet participant --scheduler tcp://HOST:PORT

Every worker must be able to import ``allnet`` and read the input and output paths.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager

from distributed import WorkerPlugin

from .errors import InputError

# Scheduler settings of a local cluster: a killed worker (typically out of memory) fails its
# case at once, since retrying a case that was killed for its memory use would kill the next
# worker too. Only one case per worker is handed out at a time (``max_in_flight``), so a
# killed worker holds no other case. An existing scheduler keeps its own settings (Dask's
# default retries a task on 3 workers), which also re-runs cases queued on a killed worker.
LOCAL_SCHEDULER_CONFIG = {"distributed.scheduler.allowed-failures": 0}
CONNECT_TIMEOUT_S = 30  # waiting for a running scheduler (--scheduler), seconds


class WarmWorker(WorkerPlugin):
    """Dask worker plugin: limits the worker's threads and loads the model files and the
    template once, when the worker starts, instead of in its first case."""

    name = "allnet-warm-worker"

    def __init__(self, models: list[str] | None, threads: int | None, warm: bool = True) -> None:
        self.models = models
        self.threads = threads
        self.warm = warm

    def setup(self, worker=None) -> None:  # noqa: ARG002 - Dask's plugin signature
        if self.threads:
            import SimpleITK as sitk
            import torch

            torch.set_num_threads(self.threads)
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(self.threads)
        if not self.warm:
            return
        from .pipeline import load_models
        from .templates import load_template

        try:
            load_template()
            load_models(self.models)
        except Exception:  # noqa: BLE001 - the first case reports the problem with its exit code
            logging.getLogger(__name__).exception("warming the worker failed")

    def teardown(self, worker=None) -> None:  # noqa: ARG002 - Dask's plugin signature
        return None


def threads_per_worker(workers: int) -> int:
    """CPU threads each of ``workers`` local workers gets (cores shared evenly, at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class _StartOnFirstTask(Executor):
    """Starts (or connects to) the cluster when the first case is submitted, so that input
    problems found before any case runs, and a ``--resume`` with nothing left, cost no
    cluster start."""

    def __init__(self, start, max_in_flight: int | None) -> None:
        self._start = start
        self._stack = ExitStack()
        self._executor: Executor | None = None
        self.max_in_flight = max_in_flight  # read by allnet.cases.run_cases

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        if self._executor is None:
            self._executor = self._stack.enter_context(self._start())
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._stack.close()


@contextmanager
def case_executor(workers: int = 1, scheduler: str | None = None,
                  models: list[str] | None = None, warm: bool = True) -> Iterator[Executor]:
    """A ``concurrent.futures.Executor`` whose tasks run on Dask workers.

    ``scheduler``: address of a running Dask scheduler (``tcp://host:8786``); its workers
    are used as they are. Otherwise a local cluster of ``workers`` processes (one case at
    a time each, the cores shared among them, memory limit = system memory / workers) is
    started on the first task and closed again on exit. ``models``: the run's model files
    (None = bundled), loaded with the template once by each worker when it starts (``warm``;
    off for runs of other functions than the pipeline).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    # A local cluster gets one case per worker at a time (see LOCAL_SCHEDULER_CONFIG); an
    # existing cluster gets every case at once, so that adaptive clusters can scale up.
    executor = _StartOnFirstTask(lambda: _dask_executor(workers, scheduler, models, warm),
                                 None if scheduler else workers)
    try:
        yield executor
    finally:
        executor.shutdown()


@contextmanager
def _dask_executor(workers: int, scheduler: str | None, models: list[str] | None,
                   warm: bool) -> Iterator[Executor]:
    import dask
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, ValueError, TypeError) as error:
            raise InputError(None, f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                                   f"there ({type(error).__name__}: {error})") from None
        threads = None  # an existing cluster's workers are sized by whoever started them
    else:
        with dask.config.set(LOCAL_SCHEDULER_CONFIG):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
        threads = threads_per_worker(workers)
    try:
        if warm or threads:
            client.register_plugin(WarmWorker(models if warm else None, threads, warm))
        yield client.get_executor(pure=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
