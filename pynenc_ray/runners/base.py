"""BaseRunner (the loop, heartbeats, recovery, signals) and ``load_runner_class``.

Runners are named in ``pynenc_ray.registry`` by import path and loaded on first
use, so naming a runner never imports what it needs (Ray, multiprocessing) until
it is really built.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..backends import patience
from ..backends.tuning import CountsReconnects, LingeringClaims
from ..cron import CronScheduler
from ..errors import BackendUnavailableError, ConfigError, PayloadStoreError, RunnerFencedError
from ..metrics.tally import Counts, Tally
from ..payloads.sweep import PayloadSweeper
from ..registry import RUNNERS
from ..resolve import resolve
from ..runner_config import RunnerConfig
from ..status import InvocationStatus
from ..triggers.engine import TriggerScheduler

if TYPE_CHECKING:
    from ..context import ExecutionContext
    from .app_protocol import RunnerApp

log = logging.getLogger("pynenc_ray.runner")
STOP_BUDGET_SEC = 1.0  # after the loop notices a stop: time left to hand work back


def load_runner_class(name: str) -> type[BaseRunner]:
    """The runner class that ``name`` (a registered runner name, or a
    ``module:Class`` path) stands for, imported on this first use.

    Raises ConfigError when ``name`` is neither a registered name nor a
    ``module:Class`` path, when the class cannot be imported, or when what it
    names is not a BaseRunner subclass.
    """
    spec = RUNNERS.get(name)
    path = spec.path if spec is not None else name
    known = ", ".join(RUNNERS)
    if spec is None and ":" not in name:
        raise ConfigError(f"runner_cls {name!r} is not a known runner; use one of "
                          f"{known} or a 'module:Class' path")
    if spec is not None:  # a built-in runner that does not import lacks a dependency
        what = f"runner_cls {name!r} ({path})"
        fix = "install what it needs (MultiThreadRunner: pip install 'pynenc-ray[ray]')"
    else:
        what = f"runner_cls {name!r}"
        fix = f"fix the import path, make its module importable, or use one of {known}"
    cls = resolve(path, what, fix)
    if not (isinstance(cls, type) and issubclass(cls, BaseRunner)):
        raise ConfigError(f"runner_cls {name!r} ({path}) is not a BaseRunner subclass")
    return cls


class BaseRunner(abc.ABC):
    """Claims and executes invocations until ``stop_runner_loop``.

    ``run()`` blocks in the calling thread; on the way out it reroutes whatever it
    still holds, so nothing stays PENDING or RUNNING under a stopped runner.
    """

    config_cls: type[RunnerConfig] = RunnerConfig
    mem_compatible: bool = False
    executes_inline: bool = False  # True: retries are re-run by the caller, not queued
    stop_grace_sec: float = 0.0  # what its hand-back may take beyond STOP_BUDGET_SEC (workers)

    def __init__(self, app: RunnerApp, conf: RunnerConfig):
        self.app, self.conf = app, conf
        self.runner_id = (f"{type(self).__name__}@{socket.gethostname()}-{os.getpid()}"
                          f"-{uuid.uuid4().hex[:6]}")
        self._stop = threading.Event()
        self._signalled: str | None = None  # the signal that stopped run(), for its log line
        self._running = threading.Event()
        self._ready = threading.Event()  # set once _on_start is done: work is being taken
        self._heartbeat_thread: threading.Thread | None = None
        # claims in flight, by number (see claiming and reconcile)
        self._claims = threading.Condition()
        self._claim_seq = 0  # the number of the last claim begun
        self._claims_open: set[int] = set()  # begun, and their ids not yet in live_invocations
        self._live_at_claim_ends: set[str] | None = None  # while reconcile looks (see there)
        self._reconciling = threading.Lock()  # one look at a time
        # the backend backend_reconnects last looked at, and it again if it counts them
        self._asked_backend: object = None
        self._counter: CountsReconnects | None = None
        # periodic tasks: fired with the heartbeat by whichever runner holds the lease
        self._cron = CronScheduler(app, self.runner_id, conf.runner_dead_after_sec)
        # triggers: the trigger log drained with the heartbeat, also under a lease
        self._triggers = TriggerScheduler(app, self.runner_id, conf.runner_dead_after_sec)
        # the payload store's objects no stored record refers to: swept, also under a lease
        self._sweeper = PayloadSweeper(app, self.runner_id, conf.runner_dead_after_sec)
        self.tally = Tally()  # what this runner's runs and reroutes add up to (its metrics)
        self.metrics_port: int | None = None  # where they are served while it runs

    @classmethod
    def runs_on_memory(cls, conf: RunnerConfig) -> bool:
        """True when a runner of this class with ``conf`` executes every invocation
        in this process, where the memory backend lives (``mem_compatible``)."""
        return cls.mem_compatible

    @property
    def max_reroutes(self) -> int:
        """``runner.max_reroutes``: deaths after which an invocation fails as poison."""
        return self.conf.max_reroutes

    @property
    def is_running(self) -> bool:
        """True while ``run()`` serves."""
        return self._running.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the runner has started its workers (or ``timeout``)."""
        return self._ready.wait(timeout)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until stopped (``stop_runner_loop``, or SIGINT/SIGTERM when called
        from the main thread), then hand back what this runner holds.

        The work (start, loop, hand-back) runs on a thread of its own, so the
        caller regains control within ``runner_loop_sleep_time_sec`` +
        ``STOP_BUDGET_SEC`` of the stop whatever the backend does (down, frozen):
        what could not be handed back by then is logged, and another runner's
        recovery reroutes it once this runner's heartbeat is
        ``runner_dead_after_sec`` old."""
        self.app.check_mem_compatible()
        self._check_payload_store()
        if self._running.is_set():
            raise RuntimeError(f"runner {self.runner_id} is already running")
        self._stop.clear()  # before the hook: a stop asked for while it runs is kept
        self._signalled = None
        self._in_calling_thread()
        self._running.set()
        restore = self._install_signal_handlers()
        failure: list[BaseException] = []
        done = threading.Event()
        work = threading.Thread(target=self._life, args=(failure, done), daemon=True,
                                name=f"runner-{self.runner_id}")
        try:
            work.start()
            while not self._stop.wait(0.25) and not done.is_set():
                pass  # the calling thread stays free to take signals
            self._stop.set()
            if self._signalled is not None:  # said here: a signal handler must not log
                log.info("runner %s: %s received, stopping: no new work; handing back what "
                         "it holds", self.runner_id, self._signalled)
            budget = self.conf.runner_loop_sleep_time_sec + STOP_BUDGET_SEC + self.stop_grace_sec
            if not done.wait(budget):  # slow, not failed: a failure is logged where it happens
                log.warning("runner %s is still handing back its work %.1fs after the stop (a "
                            "slow or frozen backend); it goes on while this process lives, and "
                            "another runner's recovery reroutes whatever is left once this "
                            "runner's heartbeat is %gs old", self.runner_id, budget,
                            self.conf.runner_dead_after_sec)
        finally:
            restore()
            self._ready.clear()
            self._running.clear()
        if failure:
            raise failure[0]

    def _check_payload_store(self) -> None:
        """ConfigError when the app's payload store cannot be opened here (a
        driver not installed, a protocol fsspec does not know): such a runner
        would fail every invocation with stored arguments it claims."""
        payloads = self.app.payloads
        if payloads is None:
            return
        try:
            payloads.check_opens()
        except PayloadStoreError as exc:
            raise ConfigError(f"runner {self.runner_id} cannot start: {exc}") from None

    def patient(self) -> contextlib.AbstractContextManager[None]:
        """A block in which the calling thread's backend calls ride out an outage:
        they retry until they succeed or this runner is told to stop (then they
        raise the backend's error, e.g. BackendUnavailableError). Raises nothing
        itself."""
        return patience.patient(self._stop)

    def _life(self, failure: list[BaseException], done: threading.Event) -> None:
        """The runner's life on its own thread: start, loop, hand back, forget."""
        try:
            with self.patient():
                self._serve()
        except BaseException as exc:  # re-raised by run() in the caller's thread
            failure.append(exc)
        finally:
            done.set()

    def _serve(self) -> None:
        with self._metrics_served():
            self._serve_work()

    @contextlib.contextmanager
    def _metrics_served(self) -> Iterator[None]:
        """Serve this runner's metrics while the block runs, when ``metrics_port``
        is set: its runs counted (``metrics.recorder``) and its endpoint up
        (``metrics.exporter``). Raises ConfigError when the port cannot be bound."""
        if self.conf.metrics_port is None:
            yield
            return
        from ..metrics.exporter import MetricsServer
        from ..metrics.recorder import recorder_for

        server = MetricsServer(self, self.conf.metrics_host, self.conf.metrics_port)
        server.start()
        self.metrics_port = server.port
        recorder = None
        try:
            recorder = recorder_for(self.app)
            recorder.watch(self.runner_id, self.tally)
            yield
        finally:
            if recorder is not None:
                recorder.unwatch(self.runner_id)
            server.close()
            self.metrics_port = None

    def metric_counts(self) -> Counts:
        """What this runner's metrics count: its tally (to which runners with
        worker processes add what their workers report), plus what runners
        with actors add."""
        return self.tally.counts()

    def slot_counts(self) -> tuple[int, int]:
        """(busy, total) slots, for the metrics; (0, 0) for a runner without slots."""
        return 0, 0

    def reroute(self, owner: str, invocation_ids: Iterable[str] | None = None, *,
                died: bool = False, fence: bool = False, isolate: bool = False) -> list[str]:
        """``backend.reroute_owned`` by this runner, counted in its tally (what
        it rerouted, and as deaths when ``died``)."""
        ids = self.app.backend.reroute_owned(owner, self.runner_id, invocation_ids, died=died,
                                             fence=fence, isolate=isolate)
        if ids:
            self.tally.rerouted(len(ids), died)
        return ids

    def _serve_work(self) -> None:
        # the access check and the first heartbeat, before anything starts: a
        # refused password or a missing permission ends the runner here with one
        # clear error, before its heartbeat announces it (an unreachable backend,
        # or one that cannot serve for now, is waited for, as at any time)
        with patience.starting():
            self.app.backend.check_access()
            self._beat()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"heartbeat-{self.runner_id}", daemon=True)
        self._heartbeat_thread.start()
        try:
            self.app.import_task_modules()
            self.offer_tuning()
            self._on_start()
            self._ready.set()
            log.info("runner %s is taking work", self.runner_id)
            while not self._stop.is_set():
                try:
                    self._runner_loop_iteration()
                except BackendUnavailableError:
                    if not self._stop.is_set():
                        raise
                    # a call riding out an outage gives up when the stop comes (its
                    # patience ends): the stop, not a failure; the hand-back below
                    # tries the backend again
                    log.info("runner %s: a backend call waiting out an outage ended with "
                             "the stop", self.runner_id)
        except RunnerFencedError as exc:
            self._fenced(exc)
        finally:
            self._stop.set()
            handed_back = False
            owners = self.owner_ids()  # read before _on_stop lets workers or actors go
            held = self._held_at_stop(owners)
            try:
                self._on_stop()
                handed_back = True
                self._log_handed_back(owners, held)
            except Exception as exc:
                log.error("runner %s could not hand back all its work (%s); another runner's "
                          "recovery will reroute it once its heartbeat is %gs old",
                          self.runner_id, exc, self.conf.runner_dead_after_sec)
            self._heartbeat_thread.join(5)
            if handed_back:  # else it must stay listed for recovery to find its work
                try:
                    self.app.backend.remove_runner(self.runner_id)
                except Exception as exc:  # never hides why the runner stopped
                    log.warning("runner %s stopped but could not be removed from the runner "
                                "list (%s); it drops out when its heartbeat is old", self.runner_id,
                                exc)

    def offer_tuning(self) -> None:
        """Tell the backend what it may tune for this runner's claims, where it
        takes it (``backends.tuning``): the runner's ``claim_linger_sec``."""
        backend = self.app.backend
        if isinstance(backend, LingeringClaims):
            backend.set_claim_linger(self.runner_id, self.conf.claim_linger_sec)

    def backend_reconnects(self) -> int:
        """How many connection faults the backend has recovered from (0 for one
        that has none): a change means a claim's reply may have been lost. Asked
        every loop of a worker, so whether the backend counts them is found out
        once per backend (an isinstance of a runtime protocol costs ~13 us)."""
        backend = self.app.backend
        if backend is not self._asked_backend:
            self._asked_backend = backend
            self._counter = backend if isinstance(backend, CountsReconnects) else None
        return self._counter.reconnects if self._counter is not None else 0

    def stop_runner_loop(self) -> None:
        """Only signals: the loop notices within ``runner_loop_sleep_time_sec``."""
        self._stop.set()

    def _install_signal_handlers(self) -> Callable[[], object]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        def handler(signum: int, frame: object) -> None:  # no heavy work (nor logging) here
            self._signalled = signal.Signals(signum).name
            self._stop.set()
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(s, h) for s, h in old.items()]

    @abc.abstractmethod
    def _runner_loop_iteration(self) -> None:
        """One pass: claim what there is room for and hand it out. Must return
        within about ``runner_loop_sleep_time_sec``."""

    def _in_calling_thread(self) -> None:  # noqa: B027 - optional hook
        """What must happen on the thread that called ``run`` (the main thread
        under the CLI), before this runner's signal handlers go in and its own
        thread starts; nothing by default. It may raise, and run() raises it."""

    def _on_start(self) -> None:  # noqa: B027 - optional hook
        """Prepare before the loop's first pass (on the runner's thread);
        nothing by default."""

    def _on_stop(self) -> None:
        """Reroute what this runner still holds (the stop line counts it)."""
        self.reroute(self.runner_id)

    def owner_ids(self) -> list[str]:
        """The runner ids whose work this runner hands back when it stops: its own,
        and those of its workers or actors (runners with some add theirs)."""
        return [self.runner_id]

    def _held_at_stop(self, owners: list[str]) -> set[str]:
        """What ``owners`` (this runner and its workers or actors) own as the stop
        begins (for the stop line's count); empty when the backend cannot say."""
        try:
            return set().union(*(self.app.backend.owned_by(o) for o in owners))
        except Exception:  # a backend down at the stop: the hand-back will say so
            return set()

    def _log_handed_back(self, owners: list[str], held: set[str]) -> None:
        """The one stop line: how many of ``held`` were rerouted after their last
        claim by one of ``owners``, whoever of them did it (read from each
        history: no clock is compared)."""
        backend, n = self.app.backend, 0
        try:
            for inv_id in held:
                history = backend.history(inv_id)
                ours = [i for i, h in enumerate(history) if h.runner_id in owners
                        and h.status in (InvocationStatus.PENDING, InvocationStatus.RUNNING)]
                if ours and any(h.status == InvocationStatus.REROUTED
                                for h in history[ours[-1] + 1:]):
                    n += 1
        except Exception as exc:  # the count is a report; the hand-back itself is done
            log.info("runner %s stopped; could not count what it rerouted (%s)",
                     self.runner_id, exc)
            return
        log.info("runner %s stopped; rerouted %d invocations", self.runner_id, n)

    # -- heartbeats and recovery ---------------------------------------------------------------

    def heartbeat_info(self) -> dict[str, Any]:
        """What this runner's heartbeat says about it: class, host, pid and the queues
        it serves (subclasses add their load)."""
        return {"runner_cls": type(self).__name__, "host": socket.gethostname(),
                "pid": os.getpid(), "queues": list(self.conf.queues)}

    def _beat(self) -> None:
        self.app.backend.heartbeat(self.runner_id, self.heartbeat_info(),
                                   self.conf.runner_dead_after_sec)

    def live_invocations(self) -> set[str] | None:
        """Ids this runner is executing right now; None if it cannot tell."""
        return None

    @contextlib.contextmanager
    def claiming(self) -> Iterator[None]:
        """Wrap a claim and the registration of what it returned as live (so its
        ids are in ``live_invocations`` by the end of the block): reconcile must
        not take a claim in flight for a lost one. Each claim gets a number, so
        reconcile waits for the claims that were in flight when it looked, never
        for a moment with no claim in flight (a runner's loop is nearly always
        claiming, an idle one too)."""
        with self._claims:
            self._claim_seq += 1
            seq = self._claim_seq
            self._claims_open.add(seq)
        try:
            yield
        finally:
            with self._claims:
                self._claims_open.discard(seq)
                if self._live_at_claim_ends is not None:
                    self._live_at_claim_ends |= self.live_invocations() or set()
                self._claims.notify_all()

    def reconcile(self, settle_sec: float = 1.0) -> list[str] | None:
        """After a reconnect: reroute what the backend says we own but we do not
        run (a claim whose reply was lost, a restored snapshot), while claims go on.

        Exact without waiting for a moment with no claim in flight, which a
        claiming loop (an idle one too) almost never has; claims are numbered
        (``claiming``). (1) Read what runs here; from then on each claim that
        ends adds what is live as it ends. (2) Read the owned set. (3) Wait
        until every claim begun by then has ended (one begun later cannot have
        taken an id of (2)). An id owned in (2) was taken by its latest claim,
        one of those. If that claim ended before (1), the id was registered and
        is in (1), unless it was done here since (final write stored, or handed
        back), and then only a later claim could own it again. If it ended after
        (1), the id was added as it ended. So an owned id found in neither came
        from a claim that returned without it: its reply was lost and nothing
        here will start it. A reroute of anything else could run it twice.
        None: the claims of (3) did not end within ``settle_sec`` (one riding
        out an outage); try again later."""
        if self.live_invocations() is None:
            return []
        with self._reconciling:
            with self._claims:
                live = self.live_invocations() or set()
                self._live_at_claim_ends = set()
            try:
                owned = self.app.backend.owned_by(self.runner_id)
                with self._claims:
                    last = self._claim_seq
                    if not self._claims.wait_for(
                            lambda: all(seq > last for seq in self._claims_open), settle_sec):
                        return None
                    live |= self._live_at_claim_ends
            finally:
                with self._claims:
                    self._live_at_claim_ends = None
        stale = owned - live
        ids = self.reroute(self.runner_id, stale) if stale else []
        if ids:
            log.warning("runner %s reconciled after a reconnect: rerouted %d it did not run",
                        self.runner_id, len(ids))
        return ids

    def _heartbeat_loop(self) -> None:
        """Beat now and every ``runner_heartbeat_interval_sec``; reconcile after a
        reconnect; now and then reroute the work of dead runners."""
        every = max(self.conf.runner_heartbeat_interval_sec, self.conf.runner_dead_after_sec / 5)
        last_check = 0.0
        reconnects = self.backend_reconnects()
        with patience.patient(self._stop):
            while not self._stop.is_set():
                try:
                    self._beat()
                    seen = self.backend_reconnects()
                    if seen != reconnects and self.reconcile() is not None:
                        reconnects = seen
                    self._watch_cancelled()
                    self._cron.tick()
                    self._triggers.tick()
                    self._sweeper.tick()
                    if time.monotonic() - last_check >= every:
                        last_check = time.monotonic()
                        rerouted = self.app.backend.recover_dead(
                            self.runner_id, self.conf.runner_dead_after_sec)
                        if rerouted:
                            self.tally.rerouted(len(rerouted), died=True)
                            log.warning("runner %s rerouted %d invocations of dead runners",
                                        self.runner_id, len(rerouted))
                except RunnerFencedError as exc:
                    self._fenced(exc)
                    return
                except Exception:  # a backend hiccup must not kill the heartbeat
                    if self._stop.is_set():
                        return
                    log.exception("heartbeat of runner %s failed; retrying", self.runner_id)
                self._stop.wait(self.conf.runner_heartbeat_interval_sec)

    def _fenced(self, exc: RunnerFencedError) -> None:
        """The backend refused this runner: its parent declared it gone (a Ray
        actor cut off from its runner) and rerouted its work. Stop: whatever it
        still runs is dropped when it finishes (a replacement runs it again)."""
        if not self._stop.is_set():
            log.warning("runner %s stops: %s", self.runner_id, exc)
        self._stop.set()

    def _watch_cancelled(self) -> None:
        """With each heartbeat: tell ``on_cancelled`` which invocations this runner
        executes were cancelled meanwhile (one read of their statuses)."""
        live = self.live_invocations()
        if not live:
            return
        ids = list(live)
        cancelled = [i for i, st in zip(ids, self.app.backend.statuses(ids))
                     if st == InvocationStatus.CANCELLED]
        if cancelled:
            self.on_cancelled(cancelled)

    def on_cancelled(self, invocation_ids: list[str]) -> None:  # noqa: B027 - optional hook
        """Invocations this runner executes were cancelled; called from the
        heartbeat thread. Runners stop them where they can (a process is killed,
        a waiting thread is woken with InvocationCancelledError); by default
        nothing: the body runs on and its final write is dropped."""

    def finish(self, invocation_id: str, status: InvocationStatus, payload: bytes,
               worker: str) -> None:
        """Write a final status and result (runners may batch these)."""
        self.app.backend.finish(invocation_id, status, payload, self.runner_id, worker)

    # -- waiting ---------------------------------------------------------------------------

    def waiting_for_results(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                            timeout: float | None) -> bool:
        """Called when a task this runner executes waits on other invocations.
        Runners override it to free the waiter's slot (or pause its process)."""
        return self.app.backend.wait_final(invocation_ids, timeout)
