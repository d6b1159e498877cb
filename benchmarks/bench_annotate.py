"""Is the annotation page ever the bottleneck? Propagation through the server against the engine alone.

One video (a held-out sequence of the demo weights, generated at 480p by the test-set renderer and
written as JPEG frames), one engine (built as ``swiftcuda annotate`` builds it: the demo weights at
their recommended internal size unless ``--weights``/``--internal-size`` say otherwise):

- **engine**: the loop a user of the API runs, on frames decoded in advance: ``step``, labels, copy
  to the host. Frames per second over every frame after the first (the first carries the mask).
  It runs in a thread of its own, as the server's propagation does (see :func:`in_thread`).
- **server**: ``swiftcuda annotate``'s server (the Starlette app on uvicorn, real HTTP, in this
  process), propagating the same video from the same first mask while a client does what the page
  does: poll the status four times a second, fetch the engine's newest frame (picture and mask) to
  show it, and scrub, asking for random frames. Frames per second between the first and the last
  frame the engine publishes: decoding, keeping the engine's state, writing the masks and serving
  the page all included. With ``--browser``, a headless Chromium shows the page as well.

The two take turns (``--rounds``), so that a busy machine slows both alike; the table gives each
round and the ratio of the medians. Scrubbing latency is the time to fetch a frame's picture and
masks, while the engine runs and while it is idle.

    python benchmarks/bench_annotate.py [--sequence dog] [--frames 60] [--rounds 2] [--browser] [--markdown RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import torch

from swiftcuda.bench.fps import environment, publish
from swiftcuda.data.testset import bundled_masks_root, load_mask_sequence, render_video, sequence_rng
from swiftcuda.precision import dtype_name

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_video(folder: Path, sequence: str, frames: int, seed: int) -> np.ndarray:
    """Write the sequence's frames at 480p as JPEGs into ``folder``; returns its first labels."""
    labels = load_mask_sequence(bundled_masks_root() / sequence, max_frames=frames, size=480)
    folder.mkdir(parents=True)
    for index, frame in enumerate(render_video(labels, sequence_rng(seed, sequence))):
        cv2.imwrite(
            str(folder / f"{index:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
    return labels[0].astype(np.uint8)


def in_thread(function, *args):
    """``function(*args)`` run in a new thread, as the server's propagation runs.

    Each thread drives its own OpenMP team, and libgomp spins less while waiting when it manages
    more threads than there are CPUs: on a busy machine a step in a fresh thread can take half the
    time it takes in the main thread. Running both measurements in fresh threads compares like
    with like.
    """
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function(*args)))
    thread.start()
    thread.join()
    return result[0]


def engine_fps(segmenter, images: list[np.ndarray], first_mask: np.ndarray) -> tuple[float, float]:
    """Frames per second of step + labels + host copy over every frame after the first, and the
    CPU seconds the process spent per frame."""
    segmenter.reset()
    segmenter.to_labels(segmenter.step(images[0], mask=first_mask)).to(torch.uint8).cpu().numpy()
    started, cpu = time.perf_counter(), time.process_time()
    for image in images[1:]:
        segmenter.to_labels(segmenter.step(image)).to(torch.uint8).cpu().numpy()
    frames = len(images) - 1
    return frames / (time.perf_counter() - started), (time.process_time() - cpu) / frames


def chromium_processes() -> list[Path]:
    """The /proc stat files of the running Chromium processes (Linux; none elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if "chromium" in (stat.parent / "cmdline").read_text(errors="replace"):
                found.append(stat)
        except OSError:
            continue
    return found


def cpu_seconds(stats: list[Path]) -> float:
    """CPU seconds used so far by the processes of these /proc stat files."""
    total = 0.0
    for stat in stats:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


class _Http:
    def __init__(self, port: int, token: str) -> None:
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(
            self.base + path, data=body, method=method, headers={"X-Swiftcuda-Token": self.token}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def timed_frame(self, index: int) -> float:
        """Seconds to fetch frame ``index``'s picture and masks (what scrubbing to it needs)."""
        started = time.perf_counter()
        self.call("GET", f"/api/frames/{index}/image")
        self.call("GET", f"/api/frames/{index}/mask")
        return time.perf_counter() - started


def server_run(segmenter, frames: Path, first_mask: np.ndarray, out: Path, browser: bool) -> dict:
    """Propagate through the server while a client (and optionally Chromium) uses it like the page."""
    import uvicorn

    from swiftcuda.annotate import AnnotationSession, Propagator, VideoFrames, create_app, new_token

    video = VideoFrames(frames, out / "session" / "pictures")
    session = AnnotationSession.open(out / "session", video)
    propagator = Propagator(session, segmenter)
    published: list[float] = []
    publish_labels = session.publish
    cpu: list[tuple[float, float]] = []  # (this process, Chromium) CPU seconds at each publish
    chromium_stats: list[Path] = []

    def publish(index, labels):
        publish_labels(index, labels)
        published.append(time.perf_counter())
        cpu.append((time.process_time(), cpu_seconds(chromium_stats)))

    session.publish = publish
    stepping: list[float] = []  # seconds of each engine step, in the propagation thread
    step = segmenter.step

    def timed_step(*args, **kwargs):
        started = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            stepping.append(time.perf_counter() - started)

    segmenter.step = timed_step
    token = new_token()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(session, propagator, token, out), log_level="warning", access_log=False, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    http = _Http(port, token)
    for _ in range(int(first_mask.max())):
        http.call("POST", "/api/objects", b"{}")
    http.call("PUT", "/api/frames/0/mask", first_mask.tobytes())
    idle = [http.timed_frame(random.randrange(len(video))) for _ in range(20)]

    chromium = page = None
    if browser:
        from playwright.sync_api import sync_playwright

        chromium = sync_playwright().start()
        launched = chromium.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = launched.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{http.base}/?token={token}")
        page.wait_for_selector("body[data-ready='1']", timeout=60000)
        chromium_stats[:] = chromium_processes()

    busy: list[float] = []
    shown = None
    http.call("POST", "/api/propagate", b"")
    next_poll = next_scrub = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= next_poll:  # the page's status poll, and following the engine's newest frame
            status = json.loads(http.call("GET", "/api/status"))
            run = status["run"]
            if not run["running"]:
                break
            if not browser and run["frame"] is not None and run["frame"] != shown:
                shown = run["frame"]
                http.timed_frame(shown)
            next_poll = now + 0.25
        if now >= next_scrub:  # the user scrubbing to some frame
            busy.append(http.timed_frame(random.randrange(len(video))))
            next_scrub = now + 0.2
        time.sleep(0.01)
    if run["error"]:
        raise RuntimeError(run["error"])
    if chromium is not None:
        page.context.browser.close()
        chromium.stop()
    server.should_exit = True
    thread.join()
    listener.close()
    del segmenter.step
    seconds = published[-1] - published[0]
    frames = len(published) - 1
    return {
        "fps": frames / seconds,
        "cpu": (cpu[-1][0] - cpu[0][0]) / frames,
        "chromium_cpu": (cpu[-1][1] - cpu[0][1]) / frames,
        "step_share": sum(stepping[1:]) / seconds,  # steps 1.. fall between the first and last publish
        "busy": busy,
        "idle": idle,
    }


def milliseconds(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"{1e3 * statistics.median(values):.0f} / {1e3 * p95:.0f} / {1e3 * values[-1]:.0f}"


def run(args: argparse.Namespace) -> str:
    from swiftcuda.cli import build_parser
    from swiftcuda.cli.annotate import build_segmenter

    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as scratch:
        root = Path(scratch)
        first_mask = make_video(root / "frames", args.sequence, args.frames, args.seed)
        options = ["annotate", str(root / "frames"), "--internal-size", args.internal_size]
        options += ["--weights", args.weights] if args.weights else []
        options += [] if args.tune else ["--no-tune"]
        segmenter = build_segmenter(build_parser().parse_args(options))
        images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((root / "frames").glob("*.jpg"))]
        in_thread(engine_fps, segmenter, images[:3], first_mask)  # warm-up (first-use costs of the model and kernels)
        rows, engine, server, engine_cpu, server_cpu = [], [], [], [], []
        for round_ in range(args.rounds):
            fps, cpu = in_thread(engine_fps, segmenter, images, first_mask)
            engine.append(fps)
            engine_cpu.append(cpu)
            measured = server_run(segmenter, root / "frames", first_mask, root / f"out{round_}", args.browser)
            server.append(measured["fps"])
            server_cpu.append(measured["cpu"] + measured["chromium_cpu"])
            chromium = f" + {1e3 * measured['chromium_cpu']:.0f}" if args.browser else ""
            rows.append(
                f"| {round_ + 1} | {engine[-1]:.1f} | {server[-1]:.1f} | {server[-1] / engine[-1]:.2f} | "
                f"{1e3 * cpu:.0f} | {1e3 * measured['cpu']:.0f}{chromium} | "
                f"{100 * measured['step_share']:.0f}% | {milliseconds(measured['idle'])} | {milliseconds(measured['busy'])} |"
            )
        height, width = images[0].shape[:2]
        running = segmenter.running_size
    ratio = statistics.median(server) / statistics.median(engine)
    cpu_ratio = statistics.median(server_cpu) / statistics.median(engine_cpu)
    lines = [
        f"### swiftcuda annotate: propagation through the server vs the engine ({time.strftime('%Y-%m-%d')})",
        "",
        f"{environment(torch.device('cpu'))}",
        "",
        f"Video: {args.sequence} (seed {args.seed}), {len(images)} frames of {width}x{height}, run at {running[1]}x{running[0]}; "
        f"{'weights ' + args.weights if args.weights else 'demo weights'}, {dtype_name(segmenter.dtype)}, "
        f"{'tuned' if args.tune else 'fixed'} convolutions; the page {'in headless Chromium and ' if args.browser else ''}"
        "simulated by a client (status 4/s, the newest frame fetched, a random frame every 0.2 s).",
        "",
        "| round | engine FPS | server FPS | server / engine | engine CPU ms / frame | server CPU ms / frame"
        f"{' (+ Chromium)' if args.browser else ''} | steps' share of the server's time | "
        "scrub ms idle (median / p95 / max) | scrub ms while propagating |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Median server / engine FPS: **{ratio:.2f}**; CPU time per frame, server{' and Chromium' if args.browser else ''} "
        f"/ engine: **{cpu_ratio:.2f}**. CPU time is the whole process's (engine, decoding, server, and this "
        "benchmark's client), so it counts what the page adds even where spare cores hide it from the FPS. The "
        "steps' share is the time the propagation thread spends in `Segmenter.step` between the first and the last "
        "frame it publishes; the rest is what the server adds on the engine's path (decoded frames waited for, "
        "states kept, masks stored).",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sequence", default="dog", help="bundled mask sequence (default dog, held out of the demo weights)"
    )
    parser.add_argument("--frames", type=int, default=60, help="frames of the video (default 60)")
    parser.add_argument("--seed", type=int, default=7, help="appearance seed of the generated video")
    parser.add_argument("--weights", help="checkpoint (default: the demo weights)")
    parser.add_argument(
        "--internal-size", default="auto", help="as for swiftcuda annotate (default auto: the weights' size)"
    )
    parser.add_argument(
        "--tune", action="store_true", help="tune CPU convolutions (default: the fixed rules, --no-tune)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="engine and server runs, taking turns (default 2)")
    parser.add_argument(
        "--browser", action="store_true", help="also show the page in headless Chromium (/usr/bin/chromium)"
    )
    parser.add_argument("--markdown", type=Path, help="append the report to this markdown file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    publish(run(args), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
