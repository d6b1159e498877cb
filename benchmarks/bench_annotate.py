"""Is the annotation page ever the bottleneck? Propagation through the server against the engine alone.

One video (a held-out sequence of the demo weights, generated at 480p by the test-set renderer and
written as JPEG frames), one engine (built as ``swiftcuda annotate`` builds it: the demo weights at
their recommended internal size unless ``--weights``/``--internal-size`` say otherwise):

- **engine**: the loop a user of the API runs, on frames decoded in advance: ``step``, labels, copy
  to the host. Frames per second over every frame after the first (the first carries the mask).
  It runs in a thread of its own, as the server's propagation does (see :func:`in_thread`).
- **page**: ``swiftcuda annotate``'s server (the Starlette app on uvicorn, real HTTP, in this
  process) propagating the same video from the same first mask while the page follows the engine:
  with ``--browser`` the real page in a headless Chromium on the same machine, otherwise a client
  doing what the page does at its fastest (poll the status twice a second, fetch the engine's
  newest frame, picture and mask, to show it). Frames per second between the first and the last
  frame the engine publishes: decoding, keeping the engine's state, writing the masks and serving
  the page all included. This is the issue's target: the page must not slow the engine.
- **scrub**: the same, while a user scrubs as well, asking for a random frame every 0.2 s (a
  client; its latency is the time to fetch the frame's picture and masks). A user scrubbing all
  through a run adds work of their own; this mode says how much, and that scrubbing never waits
  for the engine.

The modes take turns (``--rounds``), so that a busy machine slows all alike; the table gives each
round and the ratios of the medians. Scrubbing latency is also measured with the engine idle.

    python benchmarks/bench_annotate.py [--sequence dog] [--frames 60] [--rounds 2] [--browser] [--markdown RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
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

#: Seconds between the simulated page's status polls: the real page's fastest pace while the engine
#: runs (RUNNING_POLL and FOLLOW in static/app.js; it slows down where each poll costs more).
PAGE_POLL_INTERVAL = 0.5

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


def open_page(url: str, profile: Path) -> subprocess.Popen:
    """The page in a headless Chromium of its own, as a user's browser shows it: no automation
    (a driver's protocol traffic would be counted against the page)."""
    window = ["--window-size=1280,800", f"--user-data-dir={profile}"]
    return subprocess.Popen(
        ["/usr/bin/chromium", *CHROMIUM_ARGS, *window, url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def settle(stats: list[Path], quiet: float = 0.05, longest: float = 15.0) -> None:
    """Wait until these processes use under ``quiet`` of a core over a second (at most ``longest``
    seconds): a freshly started browser keeps working for seconds after the page is ready, which
    would be counted against the page. A user draws the first masks before propagating, by which
    time that work is done."""
    deadline = time.perf_counter() + longest
    while time.perf_counter() < deadline:
        before = cpu_seconds(stats)
        time.sleep(1.0)
        if cpu_seconds(stats) - before < quiet:
            return


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


def server_run(segmenter, frames: Path, first_mask: np.ndarray, out: Path, browser: bool, scrub: bool) -> dict:
    """Propagate through the server while the page (Chromium, or a client in its place) follows
    the engine, and with ``scrub`` a user asks for a random frame every 0.2 s as well."""
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
    pictures = 0  # frames served to show (the page following the engine; a scrubbing user too)
    serve_picture = video.picture

    def picture(index):
        nonlocal pictures
        pictures += 1
        return serve_picture(index)

    video.picture = picture
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
    idle = [http.timed_frame(random.randrange(len(video))) for _ in range(20)] if scrub else []

    chromium = None
    if browser:
        asked = pictures
        chromium = open_page(f"{http.base}/?token={token}", out / "chromium-profile")
        deadline = time.perf_counter() + 60
        while pictures == asked:  # the page has started and asked for its first frame
            if chromium.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("Chromium did not open the page")
            time.sleep(0.05)
        chromium_stats[:] = chromium_processes()
        settle(chromium_stats)

    busy: list[float] = []
    shown = None
    pictures = 0
    http.call("POST", "/api/propagate", b"")
    next_poll = next_scrub = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= next_poll:
            if browser:  # the page polls for itself; this only watches for the end, in process
                run = propagator.status()
                next_poll = now + 0.05
            else:  # the page's status poll, and following the engine's newest frame
                run = json.loads(http.call("GET", "/api/status"))["run"]
                if run["frame"] is not None and run["frame"] != shown:
                    shown = run["frame"]
                    http.timed_frame(shown)
                next_poll = now + PAGE_POLL_INTERVAL
            if not run["running"]:
                break
        if scrub and now >= next_scrub:  # the user scrubbing to some frame
            busy.append(http.timed_frame(random.randrange(len(video))))
            next_scrub = now + 0.2
        time.sleep(0.01)
    if run["error"]:
        raise RuntimeError(run["error"])
    if chromium is not None:
        chromium.terminate()
        chromium.wait(timeout=30)
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
        "shown_per_s": (pictures - len(busy)) / seconds,
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
        rows = []
        fps: dict[str, list[float]] = {"engine": [], "page": [], "scrub": []}
        cpu: dict[str, list[float]] = {"engine": [], "page": []}
        for round_ in range(args.rounds):
            engine, engine_cpu = in_thread(engine_fps, segmenter, images, first_mask)
            fps["engine"].append(engine)
            cpu["engine"].append(engine_cpu)
            page = server_run(segmenter, root / "frames", first_mask, root / f"page{round_}", args.browser, scrub=False)
            fps["page"].append(page["fps"])
            cpu["page"].append(page["cpu"] + page["chromium_cpu"])
            scrub = server_run(
                segmenter, root / "frames", first_mask, root / f"scrub{round_}", args.browser, scrub=True
            )
            fps["scrub"].append(scrub["fps"])
            chromium = f" + {1e3 * page['chromium_cpu']:.0f}" if args.browser else ""
            rows.append(
                f"| {round_ + 1} | {engine:.1f} | {page['fps']:.1f} | {page['fps'] / engine:.2f} | "
                f"{scrub['fps']:.1f} | {scrub['fps'] / engine:.2f} | {1e3 * engine_cpu:.0f} | "
                f"{1e3 * page['cpu']:.0f}{chromium} | {page['shown_per_s']:.1f} | {100 * page['step_share']:.0f}% | "
                f"{milliseconds(scrub['idle'])} | {milliseconds(scrub['busy'])} |"
            )
        height, width = images[0].shape[:2]
        running = segmenter.running_size
    median = {mode: statistics.median(values) for mode, values in fps.items()}
    cpu_ratio = statistics.median(cpu["page"]) / statistics.median(cpu["engine"])
    the_page = "the page in headless Chromium" if args.browser else "a client doing what the page does"
    pace = (
        "its status and newest frame paced to a share of the time, at most twice a second"
        if args.browser
        else f"status every {PAGE_POLL_INTERVAL:g} s, the newest frame fetched"
    )
    lines = [
        f"### swiftcuda annotate: propagation through the server vs the engine ({time.strftime('%Y-%m-%d')})",
        "",
        f"{environment(torch.device('cpu'))}",
        "",
        f"Video: {args.sequence} (seed {args.seed}), {len(images)} frames of {width}x{height}, run at {running[1]}x{running[0]}; "
        f"{'weights ' + args.weights if args.weights else 'demo weights'}, {dtype_name(segmenter.dtype)}, "
        f"{'tuned' if args.tune else 'fixed'} convolutions. Page: {the_page}, following the engine ({pace}); scrub: "
        "the same and a random frame asked for every 0.2 s.",
        "",
        "| round | engine FPS | page FPS | page / engine | scrub FPS | scrub / engine | engine CPU ms / frame | "
        f"page CPU ms / frame{' (+ Chromium)' if args.browser else ''} | frames the page showed / s | "
        "steps' share of the page run | "
        "scrub ms idle (median / p95 / max) | scrub ms while propagating |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Median page / engine FPS: **{median['page'] / median['engine']:.2f}** (the target: the page does not slow the "
        f"engine); with a user scrubbing throughout: {median['scrub'] / median['engine']:.2f}. CPU time per frame, "
        f"page run{' and Chromium' if args.browser else ''} / engine: {cpu_ratio:.2f}. CPU time is the whole "
        "process's (engine, decoding, server, and this benchmark's client), so it counts what the page adds even "
        "where spare cores hide it from the FPS. The steps' share is the time the propagation thread spends in "
        "`Segmenter.step` between the first and the last frame it publishes; the rest is what the server adds on "
        "the engine's path (decoded frames waited for, states kept, masks stored).",
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
    parser.add_argument("--rounds", type=int, default=2, help="engine, page and scrub runs, taking turns (default 2)")
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
