"""Where benchmark cells run: in this process, one after the other, or on a Dask cluster.

An executor takes the planned cells and a ``run`` function (``pd4ml.bench.cells.run_cell``), runs
every cell once and reports each step through ``on_event`` as a :class:`CellEvent`:

- ``"started"``: a worker (or this process) began the cell;
- ``"retrying"``: the cell began again, because its worker died or ``run`` raised;
- ``"finished"`` / ``"failed"``: the outcome is known (``outcome.status == "failed"`` gives
  ``"failed"``, any other status ``"finished"``; the outcome carries the exact status).

Three executors:

- :func:`run_local`: sequential, in-process, in the order of the cells;
- :func:`run_dask`: one Dask future per cell, on a ``distributed`` scheduler given by its address
  (``dask scheduler`` on a login node, or a SLURM/HTCondor cluster from :func:`jobqueue_cluster`)
  or on a :func:`local_cluster` of worker processes on this machine. A worker process that dies
  (out of memory, a segfault in a native library) loses only the cell it was running; the
  scheduler runs that cell again on another worker, up to ``retries`` more times;
- :func:`jobqueue_cluster`: a ``dask_jobqueue`` SLURM or HTCondor cluster whose jobs each start one
  single-threaded worker process per core.

The executors know nothing about what a cell is: cells and outcomes are any picklable objects; an
outcome has a ``status`` attribute. The ``run`` function must be a top-level function (Dask pickles
it by reference, so the workers must be able to import its module).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import queue
import shlex
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from pd4ml._logging import get_logger
from pd4ml.bench.errors import BenchError
from pd4ml.naming import closest_hint

if TYPE_CHECKING:
    from distributed import LocalCluster

__all__ = [
    "CLUSTER_KINDS",
    "THREAD_VARIABLES",
    "CellEvent",
    "EventKind",
    "jobqueue_cluster",
    "local_cluster",
    "run_dask",
    "run_local",
]

log = get_logger("bench.executors")

EventKind = Literal["started", "finished", "failed", "retrying"]

#: The environment variables that bound the threads of the numerical libraries (OpenMP, which
#: torch uses for its intra-op threads, MKL, OpenBLAS). A worker process gets them set to its
#: thread count before it starts, so that ``n`` single-threaded workers use ``n`` cores, not ``n²``.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: The batch systems :func:`jobqueue_cluster` can submit workers to.
CLUSTER_KINDS = ("slurm", "htcondor")

_DASK_INSTALL = "pip install 'pd4ml-hep[dask]'"
_CLUSTER_INSTALL = "pip install 'pd4ml-hep[cluster]'"


class HasStatus(Protocol):
    """An outcome: ``status`` is ``"finished"``, ``"failed"`` or ``"skipped"``."""

    @property
    def status(self) -> str: ...


C = TypeVar("C")
O = TypeVar("O", bound=HasStatus)  # noqa: E741 - the outcome type, next to C for the cell


@dataclass(frozen=True)
class CellEvent(Generic[C, O]):
    """One step of one cell: ``kind`` (started, retrying, finished, failed), the cell, and its
    outcome (``None`` for started and retrying; for a failed ``run`` without a ``lost``
    callback in :func:`run_local`, also ``None``)."""

    kind: EventKind
    cell: C
    outcome: O | None = None


def _finished_kind(outcome: HasStatus) -> EventKind:
    return "failed" if outcome.status == "failed" else "finished"


def run_local(
    cells: Sequence[C],
    run: Callable[[C], O],
    on_event: Callable[[CellEvent[C, O]], None],
    *,
    lost: Callable[[C, BaseException], O] | None = None,
) -> list[O]:
    """Run ``cells`` one after the other in this process, in order.

    ``run`` should never raise (``run_cell`` records a failing cell as a failed outcome); if it
    does, the exception is logged with its traceback, the cell gets a ``"failed"`` event whose
    outcome is ``lost(cell, exception)`` (``None`` without ``lost``, and then the cell is left out
    of the returned list), and the next cell runs. ``KeyboardInterrupt`` (and ``SystemExit``)
    stop the run: they propagate from the cell they interrupted; later cells do not start.

    Returns the outcomes in the order of ``cells``.
    """
    outcomes: list[O] = []
    for cell in cells:
        on_event(CellEvent("started", cell))
        try:
            outcome = run(cell)
        except Exception as error:
            log.error("cell %r raised instead of returning a failed outcome", cell, exc_info=True)
            replacement = lost(cell, error) if lost is not None else None
            on_event(CellEvent("failed", cell, replacement))
            if replacement is not None:
                outcomes.append(replacement)
            continue
        on_event(CellEvent(_finished_kind(outcome), cell, outcome))
        outcomes.append(outcome)
    return outcomes


# --------------------------------------------------------------------------------------------
# Dask


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as error:
        raise BenchError(
            "the Dask executor (--executor dask) needs the 'distributed' package, which is not "
            f"installed ({error}); install it with: {_DASK_INSTALL}"
        ) from error
    return distributed


def _cluster_config(threads_per_worker: int, retries: int) -> dict[str, Any]:
    """The Dask configuration of a local cluster: a dead worker's task is run again at most
    ``retries`` times; worker processes start with their thread variables set."""
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.update({name: str(threads_per_worker) for name in THREAD_VARIABLES})
    return {
        "distributed.scheduler.allowed-failures": retries,
        "distributed.nanny.pre-spawn-environ": environ,
    }


@contextlib.contextmanager
def local_cluster(
    workers: int = 2, *, threads_per_worker: int = 1, retries: int = 2
) -> Iterator[LocalCluster]:
    """A ``distributed.LocalCluster`` of ``workers`` worker processes on this machine (loopback
    only, its dashboard on a free port), each with ``threads_per_worker`` threads and with
    ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` set to
    ``threads_per_worker`` before the process starts. A task whose worker dies is run again at
    most ``retries`` times, then fails with ``distributed.KilledWorker``.

    The nanny sets those variables in this process too before it spawns a worker; they are
    restored when the context exits.
    """
    if workers < 1 or threads_per_worker < 1 or retries < 0:
        raise BenchError(
            f"local Dask cluster: workers={workers}, threads_per_worker={threads_per_worker} "
            f"must be at least 1 and retries={retries} at least 0"
        )
    distributed = _import_distributed()
    import dask

    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    try:
        with dask.config.set(_cluster_config(threads_per_worker, retries)):
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",  # any free port: two runs must not clash
                silence_logs=logging.ERROR,
            )
        with cluster:
            yield cluster
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


#: What a cell's task returns when its outcome already reached the scheduler as an event.
_OUTCOME_SENT = "pd4ml-bench: outcome sent to the scheduler"


def _tell_scheduler(topic: str, message: dict[str, Any]) -> bool:
    """Log ``message`` under ``topic`` on the scheduler, waiting for it to arrive (a round trip,
    not the worker's buffered event stream, so it is there even if this process dies next)."""
    try:
        from distributed import get_client

        get_client().log_event(topic, message)
    except Exception:  # not on a worker, or the scheduler is gone
        return False
    return True


def _run_on_worker(run: Callable[[C], O], cell: C, topic: str, index: int) -> O | str:
    """The task of one cell: tell the client that a worker began it, run it, send the outcome.

    The outcome travels through the scheduler rather than staying in the worker's memory as
    the task's result: a worker that dies next (the following cell kills it) would take a result
    with it, and the scheduler would run the finished cell again to recompute it."""
    _tell_scheduler(topic, {"kind": "started", "index": index})
    outcome = run(cell)
    try:
        sent = pickle.dumps(outcome)
    except Exception:
        return outcome  # not picklable: Dask's own serialisation reports it
    if _tell_scheduler(topic, {"kind": "outcome", "index": index, "outcome": sent}):
        return _OUTCOME_SENT
    return outcome


def _task_key(cell: object, index: int, token: str) -> str:
    """``cell-<dataset>-<model>-<seed>-<key>-<run token>`` (the cell's fields that exist), so the
    dashboard and the scheduler's logs name the cell; the token keeps two runs apart."""
    fields = [getattr(cell, name, None) for name in ("dataset", "model", "seed", "key")]
    named = [str(value) for value in fields if value is not None]
    return "-".join(["cell", *(named or [str(index)]), token])


def _connect(distributed: Any, scheduler: str, timeout: float) -> Any:
    try:
        client = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise BenchError(
            f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s ({error}). "
            "Start a scheduler with `dask scheduler` (it prints its address, "
            "tcp://HOST:8786) and workers with `dask worker tcp://HOST:8786` on machines that "
            "share the output directory and the data cache, then pass that address to "
            "--scheduler; or leave --scheduler out to run on a local cluster."
        ) from error
    return client


def _capacity(client: Any) -> int:
    """The worker threads the scheduler has now (at least 1, so the first cell waits for a
    worker on the scheduler rather than here)."""
    try:
        threads: int = sum(client.nthreads().values())
        return max(1, threads)
    except Exception:
        return 1


def run_dask(
    cells: Sequence[C],
    run: Callable[[C], O],
    on_event: Callable[[CellEvent[C, O]], None],
    *,
    lost: Callable[[C, BaseException], O],
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    retries: int = 2,
    connect_timeout: float = 30.0,
) -> list[O]:
    """Run ``cells`` as Dask futures; return their outcomes in the order of ``cells``.

    ``scheduler``: the address of a running ``distributed`` scheduler (``tcp://HOST:8786``);
    without it a :func:`local_cluster` of ``workers`` (default 2) processes with
    ``threads_per_worker`` threads is started and closed again. ``run`` must be a picklable
    top-level function, ``cells`` picklable.

    Each cell is one task (``pure=False``, key ``cell-<dataset>-<model>-<seed>-<key>-<token>``).
    Only as many tasks are handed to the scheduler as the workers have threads, so a worker
    holds only the cell it runs and a worker that dies takes no innocent cell's retry budget.
    A cell whose ``run`` raises is run again up to ``retries`` times; a cell whose worker dies is
    run again by the scheduler, up to ``retries`` times on a local cluster (on a remote
    scheduler its ``distributed.scheduler.allowed-failures`` setting counts, default 3). A cell
    that exhausts them becomes ``lost(cell, exception)`` (e.g. ``KilledWorker``), reported as
    ``"failed"``; the other cells go on. A worker sends a cell's outcome to the scheduler as
    soon as ``run`` returns, so a worker that dies afterwards does not make the scheduler
    recompute a cell that already finished.

    Events: ``"started"`` when a worker begins a cell, ``"retrying"`` when it begins again,
    then ``"finished"`` or ``"failed"``; ``on_event`` is called from this thread.

    Raises :class:`BenchError` when ``distributed`` is not installed or the scheduler cannot be
    reached within ``connect_timeout`` seconds. ``KeyboardInterrupt`` cancels the cells still
    queued or running and propagates. The client (and a local cluster) is closed in all cases.
    """
    distributed = _import_distributed()
    if retries < 0:
        raise BenchError(f"run_dask: retries={retries} must be at least 0")
    if scheduler is not None and workers is not None:
        raise BenchError(
            f"run_dask: workers={workers} sizes a local cluster, but a scheduler ({scheduler!r}) "
            "was given: its workers are the ones started with `dask worker ADDRESS` (or by "
            "jobqueue_cluster(...).scale(jobs=N)); leave workers out"
        )
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(
                local_cluster(
                    workers if workers is not None else 2,
                    threads_per_worker=threads_per_worker,
                    retries=retries,
                )
            )
            address = cluster.scheduler_address
        else:
            address = scheduler
        client = _connect(distributed, address, connect_timeout)
        stack.callback(client.close)
        return _DaskRun(client, cells, run, on_event, lost, retries).run()
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns or raises


class _DaskRun(Generic[C, O]):
    """The bookkeeping of one :func:`run_dask` call: a bounded number of futures in flight; the
    workers' start and outcome events and the futures' completions arrive on one queue, drained
    in this thread."""

    #: Seconds a completed future waits for its outcome event before its result is fetched.
    outcome_grace = 10.0

    def __init__(
        self,
        client: Any,
        cells: Sequence[C],
        run: Callable[[C], O],
        on_event: Callable[[CellEvent[C, O]], None],
        lost: Callable[[C, BaseException], O],
        retries: int,
    ) -> None:
        self.client = client
        self.cells = list(cells)
        self.run_cell = run
        self.on_event = on_event
        self.lost = lost
        self.retries = retries
        self.token = uuid.uuid4().hex[:8]
        self.topic = f"pd4ml-bench-{self.token}"
        self.messages: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        self.waiting: deque[int] = deque(range(len(self.cells)))
        self.in_flight: dict[int, Any] = {}
        self.completed_at: dict[int, float] = {}
        self.starts: dict[int, int] = {}
        self.outcomes: dict[int, O] = {}

    def run(self) -> list[O]:
        self.client.subscribe_topic(self.topic, self._on_worker_event)
        try:
            while self.waiting or self.in_flight:
                self._submit_up_to(_capacity(self.client) if self.waiting else 0)
                try:
                    kind, index, payload = self.messages.get(timeout=0.5)
                except queue.Empty:
                    pass  # look again for new workers (a batch system starts them late)
                else:
                    self._handle(kind, index, payload)
                self._fetch_overdue_results()
        finally:
            if self.in_flight:
                self.client.cancel(list(self.in_flight.values()))
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(self.topic)
        return [self.outcomes[index] for index in range(len(self.cells))]

    def _on_worker_event(self, event: tuple[float, Mapping[str, Any]]) -> None:
        message = event[1]
        self.messages.put((str(message["kind"]), int(message["index"]), message.get("outcome")))

    def _submit_up_to(self, capacity: int) -> None:
        while self.waiting and len(self.in_flight) < capacity:
            index = self.waiting.popleft()
            cell = self.cells[index]
            future = self.client.submit(
                _run_on_worker,
                self.run_cell,
                cell,
                self.topic,
                index,
                key=_task_key(cell, index, self.token),
                pure=False,
                retries=self.retries,
            )
            future.add_done_callback(
                lambda _, index=index: self.messages.put(("done", index, None))
            )
            self.in_flight[index] = future

    def _handle(self, kind: str, index: int, payload: Any) -> None:
        if index in self.outcomes:
            return  # a late message about a cell that is over
        if kind == "started":
            self._started(index)
        elif kind == "outcome":
            self._finish(index, pickle.loads(payload))  # noqa: S301 - from our own workers
        elif kind == "done":
            self._completed(index)

    def _started(self, index: int) -> None:
        self.starts[index] = self.starts.get(index, 0) + 1
        kind: EventKind = "started" if self.starts[index] == 1 else "retrying"
        self.on_event(CellEvent(kind, self.cells[index]))

    def _completed(self, index: int) -> None:
        future = self.in_flight[index]
        if future.status == "finished":
            # its outcome event is on its way (it left the worker before the result did)
            self.completed_at.setdefault(index, time.monotonic())
            return
        try:
            error = future.exception()
        except BaseException as cancelled:  # CancelledError: the scheduler forgot the task
            error = cancelled
        self._lose(index, error)

    def _fetch_overdue_results(self) -> None:
        now = time.monotonic()
        for index, completed in list(self.completed_at.items()):
            if now - completed < self.outcome_grace or index in self.outcomes:
                continue
            try:
                result = self.in_flight[index].result(timeout=self.outcome_grace)
            except Exception as error:
                self._lose(index, error)
                continue
            if isinstance(result, str) and result == _OUTCOME_SENT:
                self._lose(index, BenchError("the cell's outcome never reached this client"))
            else:
                self._finish(index, result)

    def _lose(self, index: int, error: BaseException) -> None:
        log.error(
            "cell %r was lost: %s",
            self.cells[index],
            "".join(traceback.format_exception_only(type(error), error)).strip(),
        )
        self._finish(index, self.lost(self.cells[index], error))

    def _finish(self, index: int, outcome: O) -> None:
        if index not in self.starts:
            self._started(index)  # the outcome overtook the worker's start event
        self.in_flight.pop(index, None)  # dropping the future releases its task
        self.completed_at.pop(index, None)
        self.outcomes[index] = outcome
        self.on_event(CellEvent(_finished_kind(outcome), self.cells[index], outcome))


# --------------------------------------------------------------------------------------------
# SLURM and HTCondor through dask-jobqueue


def jobqueue_cluster(
    kind: str,
    *,
    cores: int = 4,
    memory: str = "16GB",
    walltime: str = "04:00:00",
    queue: str | None = None,
    account: str | None = None,
    disk: str = "20GB",
    python: str | None = None,
    local_directory: str | None = None,
    log_directory: str | None = None,
    interface: str | None = None,
    environment: Mapping[str, str] | None = None,
    setup: Sequence[str] = (),
    job_extra: Sequence[str] | Mapping[str, str] = (),
    worker_extra: Sequence[str] = (),
    scheduler_options: Mapping[str, Any] | None = None,
) -> Any:
    """A ``dask_jobqueue`` cluster on a batch system: ``kind`` is ``"slurm"`` or ``"htcondor"``.

    Its scheduler runs in this process (on the login or submit node); ``cluster.scale(jobs=n)``
    submits ``n`` jobs, each asking for ``cores`` cores and ``memory`` and starting ``cores``
    worker processes with one thread each (``--nworkers cores --nthreads 1``, each worker with a
    memory limit of ``memory / cores``). Benchmark cells are CPU-bound torch training: one cell
    per core, in its own process, scales better than threads sharing one interpreter, and a cell
    that crashes its process takes no other cell with it. The job script exports
    ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1`` before the workers start, then
    ``environment`` (e.g. ``{"PD4ML_DATA_DIR": "/shared/pd4ml-data"}``), then runs the ``setup``
    shell lines (e.g. ``"source /shared/venv/bin/activate"``).

    - ``walltime`` (SLURM ``-t``), ``queue`` (``-p``), ``account`` (``-A``): SLURM only; HTCondor
      jobs take their run-time limit from the pool's policy (add it through ``job_extra``, e.g.
      ``{"+MaxRuntime": "14400"}`` at CERN).
    - ``disk``: HTCondor's ``RequestDisk`` (required by HTCondor; ignored by SLURM).
    - ``python``: the interpreter on the compute nodes (default: this one, ``sys.executable``,
      which must then exist there too, e.g. a virtual environment on a shared file system).
    - ``local_directory``: fast node-local scratch for the workers (``$TMPDIR``, ``/scratch``).
    - ``log_directory``: where the batch system writes each job's output and error.
    - ``interface``: the network interface workers and scheduler talk on (``ib0``, ``eth0``).
    - ``job_extra``: more batch directives: SLURM lines without ``#SBATCH`` (``"--gres=gpu:1"``);
      HTCondor ``{"key": "value"}`` or ``"key = value"`` strings.
    - ``worker_extra``: more ``dask worker`` arguments; ``scheduler_options``: passed to the
      scheduler (``{"dashboard_address": ":8787"}``, ``{"host": "login1"}``).

    ``cluster.job_script()`` shows the script a job runs. Close the cluster (``cluster.close()``
    or ``with``) when done: it cancels the jobs. Raises :class:`BenchError` for an unknown
    ``kind`` (naming the closest) or when ``dask_jobqueue`` is not installed.
    """
    normal = kind.strip().lower()
    if normal not in CLUSTER_KINDS:
        raise BenchError(
            f"unknown cluster kind {kind!r}{closest_hint(kind, list(CLUSTER_KINDS))}; "
            f"known kinds: {', '.join(CLUSTER_KINDS)}"
        )
    if cores < 1:
        raise BenchError(f"jobqueue_cluster: cores={cores} must be at least 1")
    try:
        jobqueue: Any = importlib.import_module("dask_jobqueue")
    except ImportError as error:
        raise BenchError(
            f"a {normal.upper() if normal == 'slurm' else 'HTCondor'} cluster needs the "
            f"'dask_jobqueue' package, which is not installed ({error}); install it with: "
            f"{_CLUSTER_INSTALL}"
        ) from error

    prologue = [f"export {name}=1" for name in THREAD_VARIABLES]
    for name, value in (environment or {}).items():
        prologue.append(f"export {name}={shlex.quote(str(value))}")
    prologue += list(setup)
    options: dict[str, Any] = {
        "cores": cores,
        "processes": cores,
        "memory": memory,
        "python": python,
        "local_directory": local_directory,
        "log_directory": log_directory,
        "interface": interface,
        "job_script_prologue": prologue,
        "worker_extra_args": list(worker_extra),
        "scheduler_options": dict(scheduler_options or {}),
    }
    if normal == "slurm":
        if isinstance(job_extra, Mapping):
            raise BenchError(
                "jobqueue_cluster('slurm', job_extra=...): give SLURM directives as a list of "
                "strings without '#SBATCH', e.g. ['--gres=gpu:1', '--constraint=avx2']"
            )
        return jobqueue.SLURMCluster(
            queue=queue,
            account=account,
            walltime=walltime,
            job_extra_directives=list(job_extra),
            **options,
        )
    return jobqueue.HTCondorCluster(
        disk=disk, job_extra_directives=_condor_directives(job_extra), **options
    )


def _condor_directives(job_extra: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(job_extra, Mapping):
        return {str(key): str(value) for key, value in job_extra.items()}
    directives: dict[str, str] = {}
    for line in job_extra:
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise BenchError(
                f"jobqueue_cluster('htcondor', job_extra=...): {line!r} is not a "
                "'key = value' submit description line (e.g. '+MaxRuntime = 14400')"
            )
        directives[key.strip()] = value.strip()
    return directives
