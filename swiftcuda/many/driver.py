"""The driver of ``segment-many``: Ray workers, up to N videos at a time to each, retries, Ctrl-C.

Reliability is Ray's: every worker is an actor restarted when its process dies
(``max_restarts``), and the video it was on is run again on the restarted actor
(``max_task_retries``); errors raised by the code itself are not retried (a corrupt video stays
corrupt). Each video's output is all-or-nothing with a done marker (:mod:`swiftcuda.many.job`), so
a retried or resumed video is never half-written or duplicated.

A worker with several streams (``--videos-per-worker N``, by default 4 on a GPU) is given up to N
videos at once, stepped together (:mod:`swiftcuda.many.lockstep`); a video that ends frees its
stream, and a waiting video joins the batch there while the others go on: the first one of a size
the worker is stepping (its first mask's size, read from the file's header), so that a batch mostly
shares one trunk pass, else the first one waiting. When a worker dies, every video it held is
retried, each from its start.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from swiftcuda.errors import InputError
from swiftcuda.many.inputs import VideoItem
from swiftcuda.many.job import finished_result, prepare_output, remove_leftovers
from swiftcuda.many.summary import VideoResult, write_summary

if TYPE_CHECKING:
    from swiftcuda.options import EngineOptions

log = logging.getLogger(__name__)

RAY_MISSING = "segment-many runs on Ray, which is not installed: pip install swiftcuda[ray]"
#: How many more times a video is tried when its worker's process dies (a lost node, a kill, a
#: crash); the actor itself is restarted as often as it takes.
RETRIES_PER_VIDEO = 2
#: Videos a worker steps together on a GPU unless told otherwise (on a CPU, where a larger batch
#: does not make a frame cheaper, one).
GPU_VIDEOS_PER_WORKER = 4
#: How far down the waiting videos the dispatcher looks for one of the size a worker is stepping.
SIZE_LOOKAHEAD = 256
#: How long Ctrl-C waits for the killed local workers to be gone before cleaning their staging folders.
KILL_WAIT_SECONDS = 10.0


def require_ray():
    """The ``ray`` module.

    Raises:
        InputError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator:
    """Ray, connected: an already initialised session as it is; else the cluster at ``address``
    (``auto``: the one ``ray start`` runs here) or, for None, a new local one, shut down afterwards.

    Raises:
        InputError: Ray is missing, or the cluster cannot be reached.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as error:
        raise InputError(
            f"cannot reach the Ray cluster at {address} ({error}): start it with `ray start --head`, or give its address"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """How many workers and what each one holds.

    Attributes:
        workers: actors.
        cpus: Ray CPUs per actor (its PyTorch threads: ``threads``).
        gpus: Ray GPUs per actor (0: the workers run on CPUs).
        videos: videos each actor steps together (its streams).
    """

    workers: int
    cpus: float
    gpus: float
    videos: int = 1

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


def cpus_per_worker(node_cpus: list[float], workers: int) -> float:
    """The most whole CPUs each of ``workers`` actors can have with all of them placed on these
    nodes (a fraction when there are more workers than CPUs)."""
    for cpus in range(int(max(node_cpus, default=1)), 0, -1):
        if sum(math.floor(n / cpus) for n in node_cpus) >= workers:
            return float(cpus)
    return max(sum(node_cpus), 1.0) / workers


def plan_workers(
    node_cpus: list[float],
    cluster_gpus: float,
    workers: int | None,
    gpus_per_worker: float | None,
    device: str | None,
    videos_per_worker: int | None = None,
) -> WorkerPlan:
    """Workers for a cluster: by default one per GPU when it has GPUs (and the device is not
    ``cpu``), stepping :data:`GPU_VIDEOS_PER_WORKER` videos together, else one using every CPU,
    one video at a time.

    Raises:
        InputError: GPUs asked for that the cluster does not have.
    """
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if cluster_gpus >= 1 and device != "cpu" else 0.0
    if device is not None and device.startswith("cuda") and gpus_per_worker <= 0:
        raise InputError("--device cuda needs GPUs for the workers: give --gpus-per-worker (e.g. 1)")
    if workers is None:
        workers = max(1, int(cluster_gpus // gpus_per_worker)) if gpus_per_worker > 0 else 1
    if gpus_per_worker > 0 and workers * gpus_per_worker > cluster_gpus + 1e-9:
        raise InputError(
            f"{workers} worker(s) x {gpus_per_worker:g} GPU exceed the Ray cluster's {cluster_gpus:g} GPU(s): "
            "lower --workers or --gpus-per-worker, or --device cpu"
        )
    if videos_per_worker is None:
        videos_per_worker = GPU_VIDEOS_PER_WORKER if gpus_per_worker > 0 else 1
    return WorkerPlan(workers, cpus_per_worker(node_cpus, workers), gpus_per_worker, videos_per_worker)


def cluster_plan(
    ray, workers: int | None, gpus_per_worker: float | None, device: str | None, videos_per_worker: int | None = None
) -> WorkerPlan:
    """:func:`plan_workers` for the cluster ``ray`` is connected to."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    node_cpus = [float(node["Resources"].get("CPU", 0)) for node in nodes]
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    return plan_workers(node_cpus, cluster_gpus, workers, gpus_per_worker, device, videos_per_worker)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the workers run, as asked (None: the defaults of :func:`plan_workers`).

    Attributes:
        address: a running Ray cluster ("auto": the one ``ray start`` runs here, or its address);
            None starts a local one.
        workers: how many workers.
        gpus_per_worker: GPUs per worker (0.5: two workers a GPU).
        videos_per_worker: videos each worker steps together.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    videos_per_worker: int | None = None


def worker_engine_options(options: EngineOptions, notify: Callable[[str], None] | None = None) -> EngineOptions:
    """The options the workers get: the weights named here (the demo weights are announced once,
    through ``notify``), a checkpoint's path made absolute (workers may run in another folder)."""
    from swiftcuda.engine import resolve_weights

    options = resolve_weights(options, notify)
    weights = Path(options.weights)
    return options.replace(weights=str(weights.resolve())) if weights.is_file() else options


def segment_many(
    items: list[VideoItem],
    out: Path,
    options: EngineOptions,
    placement: Placement = Placement(),
    overwrite: bool = False,
    notify: Callable[[str], None] | None = None,
) -> list[VideoResult]:
    """Segment ``items`` into ``out`` on Ray workers placed as asked, each running the engine
    ``options`` describe, showing one progress bar; videos done by an earlier run are skipped
    unless ``overwrite``.

    Args:
        notify: called with a line for the user (the demo weights are in use); None logs it.

    Returns:
        One :class:`~swiftcuda.many.summary.VideoResult` per item, in order.

    Raises:
        InputError: Ray is missing, the cluster cannot be reached or lacks the GPUs asked for,
            ``out`` holds something else, or compiled convolutions come with several videos per
            worker; the workers' model-loading errors.
    """
    from tqdm import tqdm

    require_ray()
    videos_per_worker = placement.videos_per_worker
    if options.compile:
        if (videos_per_worker or 1) > 1:
            raise InputError("--compile steps one video at a time: leave out --videos-per-worker, or --compile")
        videos_per_worker = 1
    out = Path(out).resolve()
    # Workers may run in another folder: every path they get is absolute.
    items = [dataclasses.replace(i, frames=i.frames.resolve(), mask=i.mask.resolve()) for i in items]
    options = worker_engine_options(options, notify)
    prepare_output(out, overwrite)
    finished = [finished_result(out, item.name) for item in ([] if overwrite else items)]
    if finished and all(finished):  # nothing to do: no cluster to start
        write_summary(out, finished)
        return finished
    with ray_session(placement.address) as ray:
        plan = cluster_plan(ray, placement.workers, placement.gpus_per_worker, options.device, videos_per_worker)
        many = ManyRun(items, out, options, plan, overwrite=overwrite)
        many.start()
        with tqdm(total=len(items), unit="video", desc="segment-many", disable=None) as bar:
            tally = {"frames": 0, "failed": 0, "started": time.perf_counter()}

            def show(result: VideoResult) -> None:
                tally["frames"] += result.frames if result.status == "done" else 0
                tally["failed"] += result.status == "failed"
                elapsed = time.perf_counter() - tally["started"]
                bar.set_postfix(
                    fps=f"{tally['frames'] / max(elapsed, 1e-9):.1f}", failed=tally["failed"], refresh=False
                )
                bar.update()

            return many.run(on_result=show)


@dataclasses.dataclass(frozen=True)
class WorkerIdentity:
    host: str
    pid: int


class ManyRun:
    """One run of ``segment-many`` over ``items`` into ``out``.

    Example::

        with ray_session(None) as ray:
            run = ManyRun(items, out, EngineOptions(weights="demo"), cluster_plan(ray, 2, None, "cpu"))
            run.start()
            results = run.run(on_result=print)

    Args:
        items: the videos.
        out: the output folder (see :func:`swiftcuda.many.job.prepare_output`).
        options: the engine's options, passed to every worker (weights named: the workers announce
            nothing; see :func:`worker_engine_options`).
        plan: the workers.
        overwrite: segment every video again, done or not.
        frame_delay: seconds each worker sleeps per frame (tests only).
    """

    def __init__(
        self,
        items: list[VideoItem],
        out: Path,
        options: EngineOptions,
        plan: WorkerPlan,
        overwrite: bool = False,
        frame_delay: float = 0.0,
    ) -> None:
        self.items, self.out, self.options, self.plan = items, Path(out), options, plan
        self.overwrite, self.frame_delay = overwrite, frame_delay
        self.actors: list = []
        self.identities: list[WorkerIdentity] = []

    def start(self) -> None:
        """Start the workers and wait until each has loaded the model.

        Raises:
            swiftcuda.errors.SwiftcudaError: the error a worker met loading the model (bad weights, no GPU, ...).
        """
        import ray

        from swiftcuda.many.worker import SegmentWorker

        options = dict(
            num_cpus=self.plan.cpus,
            num_gpus=self.plan.gpus,
            max_restarts=-1,
            max_task_retries=RETRIES_PER_VIDEO,
            max_concurrency=self.plan.videos,  # each call in progress holds one of the worker's streams
        )
        self.actors = [
            SegmentWorker.options(**options).remote(self.options, self.plan.threads, self.plan.videos, self.frame_delay)
            for _ in range(self.plan.workers)
        ]
        self.identities = []
        for host, pid, error in ray.get([actor.identity.remote() for actor in self.actors]):
            if error is not None:
                self.stop()
                raise error
            self.identities.append(WorkerIdentity(host, pid))

    def run(self, on_result: Callable[[VideoResult], None] | None = None) -> list[VideoResult]:
        """Segment every video not done yet; write ``summary.jsonl`` (also when interrupted).

        Args:
            on_result: called with each video's result as it comes (skipped ones first).

        Returns:
            One result per item, in the items' order.
        """
        import ray

        report = on_result or (lambda result: None)
        results: dict[str, VideoResult] = {}
        pending: collections.deque[VideoItem] = collections.deque()
        for item in self.items:
            done = None if self.overwrite else finished_result(self.out, item.name)
            if done is None:
                remove_leftovers(self.out, item.name)
                pending.append(item)
            else:
                results[item.name] = done
                report(done)
        sizes = {item.name: first_mask_size(item.mask) for item in pending} if self.plan.videos > 1 else {}
        # One entry per free stream, the workers interleaved so that the videos spread over them first.
        idle, running = [actor for _ in range(self.plan.videos) for actor in self.actors], {}
        try:
            while pending or running:
                while idle and pending:
                    actor = idle.pop()
                    stepping = {sizes[i.name] for a, i in running.values() if a is actor and i.name in sizes}
                    item = take_next(pending, sizes, stepping)
                    running[actor.segment.remote(item, str(self.out))] = (actor, item)
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    actor, item = running.pop(ref)
                    result, alive = self._collect(ray, ref, item)
                    if alive:
                        idle.append(actor)
                    results[item.name] = result
                    report(result)
            for item in pending:  # only when every worker is gone for good
                results[item.name] = VideoResult(item.name, "failed", error="no worker left to run it")
                report(results[item.name])
        except BaseException:
            self.stop()
            raise
        finally:
            write_summary(self.out, [results.get(i.name) or self._uncollected(i.name) for i in self.items])
        return [results[item.name] for item in self.items]

    def _uncollected(self, video: str) -> VideoResult:
        """A video without a result when the run stopped: done if its worker finished it meanwhile."""
        return finished_result(self.out, video, status="done") or VideoResult(video, "not run")

    @staticmethod
    def _collect(ray, ref, item: VideoItem) -> tuple[VideoResult, bool]:
        """The result of a finished call, and whether its worker can take another video."""
        try:
            return ray.get(ref), True
        except ray.exceptions.RayActorError as error:
            reason = f"its worker died {RETRIES_PER_VIDEO + 1} times ({first_line(error)})"
            return VideoResult(item.name, "failed", error=reason), False
        except ray.exceptions.RayTaskError as error:
            # an unexpected error in the engine; the worker is fine for the next video
            cause = getattr(error, "cause", None) or error
            return VideoResult(item.name, "failed", error=f"{type(cause).__name__}: {first_line(cause)}"), True

    def stop(self) -> None:
        """Kill the workers (no restart) and remove what they were writing.

        The staging folders of local workers are removed once their processes are gone; those a
        remote worker leaves are removed by the next run.
        """
        import ray

        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        here = socket.gethostname()
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        for identity in self.identities:
            if identity.host == here:
                while process_alive(identity.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        for item in self.items:
            remove_leftovers(self.out, item.name)
        self.actors = []


def take_next(
    pending: collections.deque[VideoItem], sizes: dict[str, tuple[int, int]], stepping: set[tuple[int, int]]
) -> VideoItem:
    """Remove and return the first waiting video whose size (``sizes``, by name) is one of
    ``stepping`` (within :data:`SIZE_LOOKAHEAD`), else the first waiting video."""
    if stepping:
        for index, item in enumerate(itertools.islice(pending, SIZE_LOOKAHEAD)):
            if sizes.get(item.name) in stepping:
                del pending[index]
                return item
    return pending.popleft()


def first_mask_size(path: Path) -> tuple[int, int]:
    """(width, height) of a mask from its header, without decoding it; (0, 0) when unreadable
    (the video's job reports why)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return (0, 0)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
