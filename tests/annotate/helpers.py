"""Shared pieces of the annotate tests: a small video on disk, random weights, waiting for runs."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch

from swiftcuda.data.testset import bundled_masks_root, load_mask_sequence, render_video, sequence_rng
from tests.models import random_swiftnet

HEIGHT, WIDTH, FRAMES = 72, 128, 9


def goat_video() -> tuple[np.ndarray, np.ndarray]:
    """A short generated video of a real object's shape and motion (the bundled DAVIS goat masks,
    generated textures): (T, H, W, 3) frames and (T, H, W) labels, the goat labelled 1."""
    labels = load_mask_sequence(bundled_masks_root() / "goat", max_frames=FRAMES, size=(HEIGHT, WIDTH))
    return render_video(labels, sequence_rng(0, "goat")), labels


def write_frames(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def write_weights(path: Path) -> Path:
    torch.save(random_swiftnet(seed=5).state_dict(), path)
    return path


def labels_of(response) -> np.ndarray:
    """A mask response's labels (the test client has already inflated the deflate encoding)."""
    return np.frombuffer(response.content, dtype=np.uint8).reshape(HEIGHT, WIDTH)


def wait_until_idle(client, timeout: float = 120.0) -> dict:
    """Poll /api/status until no run is in progress; returns the last status."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get("/api/status").json()
        if not status["run"]["running"]:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run did not finish in {timeout} s: {status['run']}")
        time.sleep(0.05)


def kinds(status: dict) -> list[str]:
    """Every frame's kind from a status's run-length encoding."""
    result = []
    for kind, first, last in status["session"]["runs"]:
        result += [kind] * (last - first + 1)
    return result


def decompressed(payload: bytes, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """Labels from a mask response's deflate-encoded body."""
    return np.frombuffer(zlib.decompress(payload), dtype=np.uint8).reshape(shape)
