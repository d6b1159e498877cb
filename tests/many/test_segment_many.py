"""``swiftcuda segment-many`` on one local Ray cluster (2 CPUs) shared by the module: masks equal to
``swiftcuda segment``'s video by video, one video at a time or several stepped together per worker
(``--videos-per-worker``), a worker killed mid-video, Ctrl-C and the rerun, bad input.

The engine runs with ``--no-tune``: with tuning on, each process measures its own convolution
algorithms (per thread count), which may move a few boundary pixels between any two runs, of
``segment`` as of ``segment-many``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from swiftcuda.cli import main
from swiftcuda.io import read_mask, write_mask
from swiftcuda.io.frames import read_image
from swiftcuda.weights import demo_weights_path
from tests.cli.test_segment import write_frames
from tests.videos import make_video, undecodable_png

ray = pytest.importorskip("ray", reason="segment-many needs the ray extra: pip install swiftcuda[ray]")
pytestmark = pytest.mark.skipif(not demo_weights_path().is_file(), reason="the demo weights are not in this checkout")

HEIGHT, WIDTH, FRAMES = 64, 96, 8
VIDEOS = ("bear", "cat", "dog", "eel")
ENGINE = ["--device", "cpu", "--no-tune"]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for every test here (starting one costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    """A DAVIS-layout root of four small videos, with ground truth."""
    root = tmp_path_factory.mktemp("davis")
    for seed, name in enumerate(VIDEOS):
        video = make_video(num_frames=FRAMES, height=HEIGHT, width=WIDTH, object_ids=(1, 2), seed=seed + 10)
        write_frames(root / "JPEGImages" / "480p" / name, video.frames)
        (root / "Annotations" / "480p" / name).mkdir(parents=True)
        for index, labels in enumerate(video.labels):  # every frame's, for eval to score
            write_mask(root / "Annotations" / "480p" / name / f"{index:05d}.png", labels.astype(np.uint8))
    return root


def frames_of(davis: Path, name: str) -> Path:
    return davis / "JPEGImages" / "480p" / name


def mask_of(davis: Path, name: str) -> Path:
    return davis / "Annotations" / "480p" / name / "00000.png"


@pytest.fixture(scope="module")
def reference(davis, tmp_path_factory) -> Path:
    """Every video segmented by ``swiftcuda segment``: REF/<video>/."""
    ref = tmp_path_factory.mktemp("reference")
    for name in VIDEOS:
        assert (
            main(
                [
                    "segment",
                    str(frames_of(davis, name)),
                    "--mask",
                    str(mask_of(davis, name)),
                    "--out",
                    str(ref / name),
                    *ENGINE,
                ]
            )
            == 0
        )
    return ref


def assert_same_masks(out: Path, ref: Path) -> None:
    produced, expected = sorted(out.iterdir()), sorted(ref.iterdir())
    assert [p.name for p in produced] == [p.name for p in expected], out
    for mine, theirs in zip(produced, expected):
        assert np.array_equal(read_mask(mine), read_mask(theirs)), mine


def assert_no_leftovers(out: Path) -> None:
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")], "a staging folder remains"


def summary(out: Path) -> dict[str, dict]:
    lines = (out / "summary.jsonl").read_text().splitlines()
    return {record["video"]: record for record in map(json.loads, lines)}


def many(root: Path, out: Path, *options) -> int:
    return main(["segment-many", str(root), "--out", str(out), "--workers", "2", *ENGINE, *map(str, options)])


def engine_options():
    """The engine options of ``ENGINE``, as a worker gets them."""
    import argparse

    from swiftcuda.cli._arguments import add_engine_arguments
    from swiftcuda.cli._arguments import engine_options as of_arguments
    from swiftcuda.many.driver import worker_engine_options

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    return worker_engine_options(of_arguments(parser.parse_args(ENGINE)))


def corrupt_copy(frames: Path, target: Path) -> Path:
    """A copy of a frames folder whose fifth frame (00004.jpg) cannot be decoded, though its header
    reads (so that it is found only when reached)."""
    shutil.copytree(frames, target)
    (target / "00004.jpg").write_bytes(undecodable_png(read_image(target / "00004.jpg")))
    return target


def start_run(davis: Path, out: Path, frame_delay: float, videos: int = 1):
    """A ManyRun over the DAVIS root with two workers of ``videos`` streams that sleep
    ``frame_delay`` per frame."""
    from swiftcuda.many.driver import ManyRun, cluster_plan
    from swiftcuda.many.inputs import discover
    from swiftcuda.many.job import prepare_output

    prepare_output(out, overwrite=False)
    plan = cluster_plan(ray, 2, None, "cpu", videos)
    run = ManyRun(discover(davis), out, engine_options(), plan, frame_delay=frame_delay)
    run.start()
    return run


def test_davis_layout_masks_equal_segment_and_a_rerun_skips(cluster, davis, reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert many(davis, out) == 0
    assert "segmented 4 videos (32 frames)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [*VIDEOS, "summary.jsonl"]
    for name in VIDEOS:
        assert_same_masks(out / name, reference / name)
    records = summary(out)
    assert list(records) == list(VIDEOS)
    assert all(
        r["status"] == "done" and r["frames"] == FRAMES and r["objects"] == 2 and r["host"] for r in records.values()
    )
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert many(davis, out) == 0
    assert "segmented 0 videos (0 frames)" in (said := capsys.readouterr().out) and "4 done before" in said
    assert all(r["status"] == "skipped" for r in summary(out).values())
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps, "a finished video was written again"


def test_manifest_with_a_video_file_and_corrupt_inputs(cluster, davis, reference, tmp_path, capsys):
    video = make_video(num_frames=FRAMES, height=HEIGHT, width=WIDTH, object_ids=(3,), seed=3)
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (WIDTH, HEIGHT))
    for frame in video.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    write_mask(tmp_path / "clip.png", video.labels[0].astype(np.uint8))
    corrupt_copy(write_frames(tmp_path / "frames", video.frames), tmp_path / "broken")
    rows = [
        {"frames": str(frames_of(davis, "bear")), "mask": str(mask_of(davis, "bear")), "name": "first"},
        {"frames": "clip.avi", "mask": "clip.png"},
        {"frames": "broken", "mask": "clip.png"},
        {"frames": str(frames_of(davis, "cat")), "mask": "absent.png", "name": "nomask"},
    ]
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    assert many(manifest, out) == 1, "failed videos make the exit status 1"
    err = capsys.readouterr().err
    assert "broken: cannot read frame" in err and "00004.jpg" in err and "nomask: mask not found" in err
    records = summary(out)
    assert [records[n]["status"] for n in ("first", "clip", "broken", "nomask")] == ["done", "done", "failed", "failed"]
    assert_same_masks(out / "first", reference / "bear")
    ref_clip = tmp_path / "ref-clip"
    assert main(["segment", str(clip), "--mask", str(tmp_path / "clip.png"), "--out", str(ref_clip), *ENGINE]) == 0
    assert_same_masks(out / "clip", ref_clip)
    assert not (out / "broken").exists() and not (out / "nomask").exists()
    assert_no_leftovers(out)


def test_videos_stepped_together_equal_segment_and_a_corrupt_one_fails_alone(davis, reference, tmp_path):
    """Two videos in one batch, each in its thread as a worker's Ray calls run: one trunk pass per
    frame for both (CPU trunk convolutions of a batch of two give the same bits as one by one, so
    the masks are ``segment``'s exactly) until the corrupt one fails at its fifth frame; the other
    goes on alone, and the freed stream then takes a new video."""
    import threading

    from swiftcuda.engine import build_batched_segmenter
    from swiftcuda.many.inputs import VideoItem
    from swiftcuda.many.job import prepare_output, segment_item
    from swiftcuda.many.lockstep import LockstepBatch

    lockstep = LockstepBatch(build_batched_segmenter(engine_options(), 2))
    batch_sizes = []
    step = lockstep.batch.step

    def counted(images, masks=None):
        batch_sizes.append(sum(image is not None for image in images))
        return step(images, masks)

    lockstep.batch.step = counted
    out = tmp_path / "out"
    prepare_output(out, overwrite=False)
    broken = corrupt_copy(frames_of(davis, "cat"), tmp_path / "broken")
    items = [
        VideoItem("bear", frames_of(davis, "bear"), mask_of(davis, "bear")),
        VideoItem("broken", broken, mask_of(davis, "cat")),
    ]
    both_in, results = threading.Barrier(2), {}

    def segment(item: VideoItem) -> None:
        with lockstep.stream() as stream:
            both_in.wait()  # both streams are taken before either steps
            results[item.name] = segment_item(stream, item, out)

    threads = [threading.Thread(target=segment, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results["bear"].status == "done" and results["bear"].frames == FRAMES
    assert results["broken"].status == "failed" and "cannot read frame" in results["broken"].error
    assert batch_sizes == [2] * 4 + [1] * (FRAMES - 4), "the videos were not stepped together"
    assert_same_masks(out / "bear", reference / "bear")
    assert not (out / "broken").exists()
    with lockstep.stream() as freed:  # the stream the corrupt video left first, reset for a new one
        assert (
            segment_item(freed, VideoItem("cat", frames_of(davis, "cat"), mask_of(davis, "cat")), out).status == "done"
        )
    assert_same_masks(out / "cat", reference / "cat")
    assert_no_leftovers(out)


def test_videos_per_worker_on_ray_equal_segment_and_a_corrupt_one_is_reported(
    cluster, davis, reference, tmp_path, capsys
):
    """Two workers of two streams for five videos: the corrupt one fails inside its batch, its
    batch-mate finishes, and the fifth video takes the stream it frees."""
    names = ["bear", "broken", "cat", "dog", "eel"]
    broken = corrupt_copy(frames_of(davis, "cat"), tmp_path / "broken")
    rows = [f"{frames_of(davis, n)},{mask_of(davis, n)},{n}" for n in names if n != "broken"]
    rows.insert(1, f"{broken},{mask_of(davis, 'cat')},broken")
    manifest = tmp_path / "videos.csv"
    manifest.write_text("frames,mask,name\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert many(manifest, out, "--videos-per-worker", 2) == 1
    assert "broken: cannot read frame" in capsys.readouterr().err
    records = summary(out)
    assert [records[n]["status"] for n in names] == ["done", "failed", "done", "done", "done"]
    for name in VIDEOS:
        assert_same_masks(out / name, reference / name)
    assert not (out / "broken").exists()
    assert_no_leftovers(out)


@pytest.mark.parametrize("videos", [1, 2], ids=["one-video-a-worker", "two-videos-a-worker"])
def test_a_worker_killed_mid_video_is_replaced_and_its_video_redone(cluster, davis, reference, tmp_path, videos):
    out = tmp_path / "out"
    run = start_run(davis, out, frame_delay=0.25, videos=videos)
    victim = run.identities[0].pid
    killed = threading.Event()

    def kill_when_writing() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed.is_set():
            if any(p.name.endswith(".partial") and any(p.iterdir()) for p in out.iterdir() if p.is_dir()):
                os.kill(victim, signal.SIGKILL)
                killed.set()
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_writing)
    killer.start()
    try:
        results = run.run()
    finally:
        killed.set()
        killer.join()
    assert [r.status for r in results] == ["done"] * len(VIDEOS), results
    restarted = {ray.get(actor.identity.remote())[1] for actor in run.actors}
    assert victim not in restarted, "the killed worker was not the one that finished the run"
    for name in VIDEOS:
        assert_same_masks(out / name, reference / name)
    assert_no_leftovers(out)
    run.stop()


@pytest.fixture
def ctrl_c_raises():
    """Python's own Ctrl-C handler during the test, whatever this process inherited: a background
    job starts with SIGINT ignored, and raising it would then do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_cleanly_and_the_rerun_does_only_the_rest(
    cluster, davis, reference, tmp_path, capsys, ctrl_c_raises
):
    out = tmp_path / "out"
    run = start_run(davis, out, frame_delay=0.15)
    pids = [identity.pid for identity in run.identities]

    def interrupt_after_first(result) -> None:
        signal.raise_signal(signal.SIGINT)  # what Ctrl-C does to the driver

    with pytest.raises(KeyboardInterrupt):
        run.run(on_result=interrupt_after_first)
    time.sleep(0.5)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids), "a worker outlived Ctrl-C"
    assert_no_leftovers(out)
    records = summary(out)
    finished = [name for name, r in records.items() if r["status"] == "done"]
    assert 1 <= len(finished) < len(VIDEOS) and all(
        records[n]["status"] == "not run" for n in VIDEOS if n not in finished
    )
    written = {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert written >= set(finished)
    for name in written - set(finished):  # renamed into place just before its worker was killed
        assert len(list((out / name).iterdir())) == FRAMES, "an unfinished video was moved into place"
    stamps = {p: p.stat().st_mtime_ns for name in finished for p in (out / name).iterdir()}

    assert many(davis, out) == 0
    assert f"{len(finished)} done before" in capsys.readouterr().out
    records = summary(out)
    assert {n for n, r in records.items() if r["status"] == "skipped"} == set(finished)
    assert {n for n, r in records.items() if r["status"] == "done"} == set(VIDEOS) - set(finished)
    assert {p: p.stat().st_mtime_ns for name in finished for p in (out / name).iterdir()} == stamps
    for name in VIDEOS:
        assert_same_masks(out / name, reference / name)
    assert_no_leftovers(out)


def test_eval_workers_segments_on_ray_and_scores_like_eval(cluster, davis, tmp_path, capsys):
    from swiftcuda.data.davis import write_sequence_list

    write_sequence_list(davis, "val", "2017", list(VIDEOS[:2]))
    common = ["eval", "--davis", str(davis), "--score-workers", "1", *ENGINE]
    assert main([*common, "--out", str(tmp_path / "here")]) == 0
    assert not (tmp_path / "here" / "summary.jsonl").exists(), "eval without --workers went through Ray"
    assert main([*common, "--out", str(tmp_path / "ray"), "--workers", "2"]) == 0
    assert [r["status"] for r in summary(tmp_path / "ray").values()] == ["done", "done"]
    capsys.readouterr()
    for table in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (tmp_path / "here" / table).read_text() == (tmp_path / "ray" / table).read_text()


def test_worker_plan_defaults():
    """One worker a GPU stepping four videos together; without GPUs one worker, one video at a time."""
    from swiftcuda.errors import InputError
    from swiftcuda.many.driver import GPU_VIDEOS_PER_WORKER, WorkerPlan, plan_workers

    assert GPU_VIDEOS_PER_WORKER == 4
    assert plan_workers([16.0, 16.0], 4.0, None, None, None) == WorkerPlan(4, 8.0, 1.0, 4)
    assert plan_workers([16.0], 4.0, None, None, "cpu") == WorkerPlan(1, 16.0, 0.0, 1)
    assert plan_workers([2.0], 0.0, 2, None, None, videos_per_worker=2) == WorkerPlan(2, 1.0, 0.0, 2)
    with pytest.raises(InputError, match="exceed the Ray cluster's 4 GPU"):
        plan_workers([16.0], 4.0, 3, 2.0, None)


def test_a_freed_stream_takes_a_video_of_the_size_its_worker_is_stepping():
    import collections

    from swiftcuda.many.driver import take_next
    from swiftcuda.many.inputs import VideoItem

    items = [VideoItem(name, Path(name), Path(f"{name}.png")) for name in ("a1", "b1", "a2", "b2")]
    sizes = {"a1": (96, 64), "a2": (96, 64), "b1": (854, 480), "b2": (854, 480)}
    pending = collections.deque(items)
    assert take_next(pending, sizes, set()).name == "a1"  # a worker stepping nothing: the first in line
    assert take_next(pending, sizes, {(854, 480)}).name == "b1"
    assert take_next(pending, sizes, {(854, 480), (1, 1)}).name == "b2"
    assert take_next(pending, sizes, {(854, 480)}).name == "a2"  # none of that size left: the first
    assert not pending


def test_without_ray_it_says_how_to_install_it(davis, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as when it is not installed
    assert many(davis, tmp_path / "out") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "swiftcuda: error: segment-many runs on Ray, which is not installed: pip install swiftcuda[ray]"
    ]


def test_bad_inputs_are_refused_before_any_worker_starts(davis, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert many(davis, out) == 2 and "already exists: pass --overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep"
    twice = tmp_path / "twice.csv"
    twice.write_text(
        f"frames,mask\n{frames_of(davis, 'bear')},{mask_of(davis, 'bear')}\n{frames_of(davis, 'bear')},{mask_of(davis, 'cat')}\n"
    )
    assert many(twice, tmp_path / "o") == 2 and "would both write bear/" in capsys.readouterr().err
    assert many(tmp_path / "nowhere", tmp_path / "o") == 2 and "input not found" in capsys.readouterr().err
    inside = frames_of(davis, "bear").parent
    assert many(davis, inside, "--overwrite") == 2 and "over the input" in capsys.readouterr().err
    assert many(davis, tmp_path / "o", "--compile", "--videos-per-worker", 2) == 2
    assert "--compile steps one video at a time" in capsys.readouterr().err
