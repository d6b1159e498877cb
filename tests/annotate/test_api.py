"""The annotation server's API through Starlette's test client: the whole workflow, and every bad request."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette", reason="the gui extra is not installed: pip install 'swiftcuda[gui]'")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2: pip install 'swiftcuda[test]'")

from starlette.testclient import TestClient  # noqa: E402  (after the extra's check)

from swiftcuda.annotate import AnnotationSession, Propagator, VideoFrames, create_app, new_token  # noqa: E402
from swiftcuda.cli import build_parser, main  # noqa: E402
from swiftcuda.cli.annotate import SESSION_FOLDER, build_segmenter  # noqa: E402
from swiftcuda.io.masks import read_mask, write_mask  # noqa: E402
from tests.annotate.helpers import (  # noqa: E402
    FRAMES,
    HEIGHT,
    WIDTH,
    goat_video,
    kinds,
    labels_of,
    wait_until_idle,
    write_frames,
    write_weights,
)
from tests.videos import make_video  # noqa: E402

CORRECTED = 4


class Video:
    """The goat video, and first labels with a second object (a square) added."""

    def __init__(self) -> None:
        self.frames, goat = goat_video()
        self.labels = goat.astype(np.uint8)
        self.labels[:, 50:64, 4:20] = np.where(self.labels[:, 50:64, 4:20] == 0, 2, self.labels[:, 50:64, 4:20])


@pytest.fixture(scope="module")
def video():
    return Video()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, video) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("annotate-inputs")
    return write_frames(root / "frames", video.frames), write_weights(root / "random.pth")


def cli_args(frames: Path, out: Path, weights: Path, *extra: str):
    return build_parser().parse_args(
        ["annotate", str(frames), "--out", str(out), "--weights", str(weights), "--no-tune", *extra]
    )


@pytest.fixture(scope="module")
def segmenter(inputs, tmp_path_factory):
    frames, weights = inputs
    return build_segmenter(cli_args(frames, tmp_path_factory.mktemp("unused"), weights))


class Workspace:
    """A session on the test video, its propagator and app, and clients with and without the token."""

    def __init__(self, frames: Path, out: Path, segmenter) -> None:
        self.out = out
        self.frames = VideoFrames(frames, out / SESSION_FOLDER / "pictures")
        self.session = AnnotationSession.open(out / SESSION_FOLDER, self.frames)
        self.propagator = Propagator(self.session, segmenter)
        self.token = new_token()
        self.app = create_app(self.session, self.propagator, self.token, out)
        self.client = TestClient(self.app, headers={"X-Swiftcuda-Token": self.token})
        self.bare = TestClient(self.app)


@pytest.fixture
def workspace(inputs, segmenter, tmp_path):
    space = Workspace(inputs[0], tmp_path / "out", segmenter)
    yield space
    space.propagator.stop(wait=True)


def test_requests_without_the_token_are_refused(workspace):
    bare = workspace.bare
    for method, path in [
        ("GET", "/"),
        ("GET", "/static/app.js"),
        ("GET", "/api/session"),
        ("GET", "/api/status"),
        ("GET", "/api/frames/0/image"),
        ("GET", "/api/frames/0/mask"),
        ("PUT", "/api/frames/0/mask"),
        ("POST", "/api/objects"),
        ("POST", "/api/propagate"),
        ("POST", "/api/export"),
        ("GET", "/api/out/x"),
        ("GET", "/no/such/page"),
    ]:
        response = bare.request(method, path)
        assert response.status_code == 403, (method, path)
        assert "token" in response.json()["error"]
    assert bare.get("/api/status", params={"token": "not-it"}).status_code == 403
    assert bare.get("/api/status", headers={"X-Swiftcuda-Token": workspace.token + "x"}).status_code == 403
    assert workspace.session.objects == {}, "nothing ran"
    # The token in the address (the page) or in the header (its requests) lets a request in.
    page = bare.get("/", params={"token": workspace.token})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"/static/api.js?token={workspace.token}" in page.text, "the import map carries the token to every module"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert (
        bare.get("/static/viewer.js", params={"token": workspace.token})
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert workspace.client.get("/api/session").json()["size"] == [HEIGHT, WIDTH]


def test_box_propagate_correct_export_and_reopen(workspace, video, monkeypatch):
    client, session = workspace.client, workspace.session
    assert client.post("/api/objects", json={}).json() == {"id": 1, "name": "object 1"}
    assert client.post("/api/objects", json={"name": "ball"}).json() == {"id": 2, "name": "ball"}
    assert client.patch("/api/objects/1", json={"name": "disc"}).json() == {"id": 1, "name": "disc"}

    # A box around object 1 comes back as the object GrabCut finds in it.
    truth = video.labels[0] == 1
    ys, xs = np.nonzero(truth)
    box = [int(xs.min()) - 3, int(ys.min()) - 3, int(xs.max()) + 4, int(ys.max()) + 4]
    response = client.post("/api/frames/0/grabcut", json={"box": box})
    assert response.status_code == 200 and response.headers["content-encoding"] == "deflate"
    found = labels_of(response).astype(bool)
    assert (found & truth).sum() / (found | truth).sum() > 0.85, "GrabCut finds the object in its box"
    assert int(response.headers["x-mask-pixels"]) == found.sum()

    # The page saves the frame's labels as given; then the first run goes from frame 0 to the end.
    first = video.labels[0].astype(np.uint8)
    assert client.put("/api/frames/0/mask", content=first.tobytes()).json() == {"frame": 0, "kind": "given"}
    assert client.get("/api/status").json()["plan"] == {"start": 0, "chain_start": 0, "fresh": True}
    assert client.post("/api/propagate").json() == {"start": 0, "chain_start": 0, "fresh": True}
    status = wait_until_idle(client)
    assert status["run"]["finished"] == "completed" and status["run"]["error"] is None
    assert status["run"]["done"] == FRAMES and status["run"]["fps"] > 0
    assert kinds(status) == ["given"] + ["predicted"] * (FRAMES - 1)
    response = client.get(f"/api/frames/{FRAMES - 1}/mask")
    assert response.headers["x-mask-kind"] == "predicted" and set(np.unique(labels_of(response))) <= {0, 1, 2}
    assert np.array_equal(labels_of(client.get("/api/frames/0/mask")), first)
    picture = client.get("/api/frames/3/image")
    assert picture.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR).shape == (HEIGHT, WIDTH, 3)

    # Correct frame 4 (object 2 gone, object 1 redrawn): frames 5 on are out of date, 0-3 are not.
    before = {t: client.get(f"/api/frames/{t}/mask").content for t in range(CORRECTED)}
    files = {t: session.folder / "predicted" / f"{t:06d}.zz" for t in range(1, CORRECTED)}
    written = {t: path.stat().st_mtime_ns for t, path in files.items()}
    corrected = np.zeros((HEIGHT, WIDTH), np.uint8)
    corrected[20:50, 30:80] = 1
    client.put(f"/api/frames/{CORRECTED}/mask", content=corrected.tobytes())
    status = client.get("/api/status").json()
    assert kinds(status) == ["given"] + ["predicted"] * (CORRECTED - 1) + ["given"] + ["stale"] * (
        FRAMES - CORRECTED - 1
    )
    assert status["plan"] == {"start": CORRECTED, "chain_start": 0, "fresh": False}
    steps = []
    original = workspace.propagator.segmenter.step
    monkeypatch.setattr(workspace.propagator.segmenter, "step", lambda *a, **k: (steps.append(a), original(*a, **k))[1])
    assert client.post("/api/propagate").json()["start"] == CORRECTED
    status = wait_until_idle(client)
    monkeypatch.undo()
    assert len(steps) == FRAMES - CORRECTED, "resumed from the state before frame 4: frames 0-3 not computed again"
    assert kinds(status) == ["given"] + ["predicted"] * (CORRECTED - 1) + ["given"] + ["predicted"] * (
        FRAMES - CORRECTED - 1
    )
    for t in range(CORRECTED):
        assert client.get(f"/api/frames/{t}/mask").content == before[t], f"frame {t} before the correction changed"
    assert all(path.stat().st_mtime_ns == written[t] for t, path in files.items()), "frames before 4 were not rewritten"
    assert np.array_equal(labels_of(client.get(f"/api/frames/{CORRECTED}/mask")), corrected)

    # Export: masks as segment writes them and the overlay video; never over an earlier export unasked.
    report = client.post("/api/export", json={}).json()
    masks, overlay = workspace.out / "masks", workspace.out / "masks.mp4"
    assert report["frames"] == FRAMES and report["without_mask"] == 0 and report["stale"] == 0
    assert Path(report["masks"]) == masks.resolve() and Path(report["overlay"]) == overlay.resolve()
    names = sorted(p.name for p in masks.iterdir())
    assert names == [f"{t:05d}.png" for t in range(FRAMES)]
    for t in range(FRAMES):
        assert np.array_equal(read_mask(masks / names[t]), labels_of(client.get(f"/api/frames/{t}/mask")))
    capture = cv2.VideoCapture(str(overlay))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == FRAMES
    stamp = (masks / names[0]).stat().st_mtime_ns
    again = client.post("/api/export", json={})
    assert again.status_code == 409 and "earlier export" in again.json()["error"]
    assert (masks / names[0]).stat().st_mtime_ns == stamp, "the earlier export is untouched"
    assert client.post("/api/export", json={"overwrite": True}).status_code == 200
    assert client.post("/api/export", json={"name": "second"}).json()["masks"].endswith("second")
    video_file = client.get(f"/{report['overlay_url']}")
    assert video_file.status_code == 200 and video_file.content[4:8] == b"ftyp"

    # Reopened from its folder (as a restarted server does), the session holds everything.
    reopened = AnnotationSession.open(session.folder, VideoFrames(workspace.frames.path, session.folder / "pictures"))
    assert reopened.objects == {1: "disc", 2: "ball"} and reopened.describe()["runs"] == session.describe()["runs"]
    for t in range(FRAMES):
        assert np.array_equal(reopened.labels(t), session.labels(t)), f"frame {t}"


def test_exported_masks_equal_segments(inputs, video, segmenter, tmp_path):
    frames, weights = inputs
    first = tmp_path / "first.png"
    write_mask(first, video.labels[0].astype(np.uint8))
    out = tmp_path / "segment"
    assert (
        main(["segment", str(frames), "--mask", str(first), "--out", str(out), "--weights", str(weights), "--no-tune"])
        == 0
    )
    space = Workspace(frames, tmp_path / "annotate", segmenter)
    for _ in range(2):
        space.client.post("/api/objects", json={})
    space.client.put("/api/frames/0/mask", content=video.labels[0].astype(np.uint8).tobytes())
    space.client.post("/api/propagate")
    assert wait_until_idle(space.client)["run"]["finished"] == "completed"
    exported = Path(space.client.post("/api/export", json={"name": "exported"}).json()["masks"])
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in exported.iterdir()) and len(names) == FRAMES
    for name in names:
        assert (exported / name).read_bytes() == (out / name).read_bytes(), f"{name} differs from segment's"


def test_bad_requests_are_refused_with_their_status(workspace, monkeypatch):
    client = workspace.client
    size = HEIGHT * WIDTH

    def refused(response, status: int, words: str) -> None:
        assert response.status_code == status, (response.status_code, response.text)
        assert words in response.json()["error"], response.json()

    refused(client.post("/api/propagate"), 400, "no frame has a mask yet")
    client.post("/api/objects", json={})
    # Unknown objects and frames out of range: 404.
    refused(client.delete("/api/objects/7"), 404, "object 7 does not exist")
    refused(client.patch("/api/objects/7", json={"name": "x"}), 404, "object 7 does not exist")
    for method, path in [("GET", "image"), ("GET", "mask"), ("PUT", "mask"), ("DELETE", "mask"), ("POST", "grabcut")]:
        refused(client.request(method, f"/api/frames/{FRAMES}/{path}"), 404, f"frame {FRAMES} is out of range")
    refused(client.delete("/api/frames/2/mask"), 404, "frame 2 has no given mask")
    refused(client.get("/api/nothing"), 404, "Not Found")
    refused(client.get("/static/..%2Fserver.py"), 404, "no page file")
    # Masks of the wrong size or with labels that are no object, malformed JSON: 400; too large: 413.
    refused(
        client.put("/api/frames/0/mask", content=b"\x01" * (size - 1)), 400, f"send {HEIGHT}x{WIDTH} = {size} bytes"
    )
    refused(client.put("/api/frames/0/mask", content=b"\x01" * (size + 1)), 413, f"more than the {size}")
    refused(client.put("/api/frames/0/mask", content=b"\x09" * size), 400, "label 9, which is no object")
    refused(client.post("/api/objects", content=b"{not json"), 400, "not JSON")
    refused(client.post("/api/objects", json=[1, 2]), 400, "must be a JSON object")
    refused(client.post("/api/objects", json={"name": 5}), 400, "'name' must be str")
    refused(client.post("/api/objects", content=b" " * 70000), 413, "more than the")
    refused(client.post("/api/frames/0/grabcut", json={"box": [1, 2]}), 400, "x0, y0, x1, y1")
    refused(client.post("/api/frames/0/grabcut", json={"box": [5, 5, 6, 40]}), 400, "draw a larger box")
    refused(client.post("/api/export", json={"overwrite": "yes"}), 400, "'overwrite' must be bool")
    refused(client.get("/api/propagate"), 405, "Method Not Allowed")
    # Paths outside --out, or into the session folder: 403.
    refused(client.get("/api/out/..%2F..%2Fetc%2Fpasswd"), 403, "outside")
    refused(client.post("/api/export", json={"name": "../elsewhere"}), 403, "outside")
    refused(client.post("/api/export", json={"name": SESSION_FOLDER}), 403, "session folder")
    refused(client.get("/api/out/nothing.mp4"), 404, "no file")
    assert not (workspace.out.parent / "elsewhere").exists()

    # While a run is held mid-way: edits, a second run and an export are refused (409).
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10:40, 10:50] = 1
    client.put("/api/frames/0/mask", content=mask.tobytes())
    gate, reached = threading.Event(), threading.Event()
    original = workspace.propagator.segmenter.step

    def held_step(*args, **kwargs):
        reached.set()
        gate.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(workspace.propagator.segmenter, "step", held_step)
    client.post("/api/propagate")
    assert reached.wait(30)
    refused(client.put("/api/frames/1/mask", content=mask.tobytes()), 409, "stop it before editing")
    refused(client.post("/api/objects", json={}), 409, "stop it before editing")
    refused(client.delete("/api/objects/1"), 409, "stop it before editing")
    refused(client.post("/api/propagate"), 409, "already propagating")
    refused(client.post("/api/export", json={}), 409, "stop it before editing")
    assert client.get("/api/status").json()["run"]["running"]
    client.post("/api/stop")
    gate.set()
    status = wait_until_idle(client)
    monkeypatch.undo()
    assert status["run"]["finished"] == "stopped" and status["session"]["chain"]["end"] < FRAMES - 1
    # Stopped runs resume where they stopped; a complete one has nothing left to do.
    assert client.post("/api/propagate").json()["start"] == status["session"]["chain"]["end"] + 1
    wait_until_idle(client)
    refused(client.post("/api/propagate"), 409, "every frame is up to date")

    # A failure inside a handler is one line with status 500, and the server goes on answering.
    monkeypatch.setattr(workspace.session, "describe", lambda: 1 / 0)
    refused(client.get("/api/status"), 500, "ZeroDivisionError")
    monkeypatch.undo()
    assert client.get("/api/status").status_code == 200


def test_removing_an_object_erases_it_and_restarts_its_chain(workspace, video):
    client = workspace.client
    client.post("/api/objects", json={})
    client.post("/api/objects", json={})
    client.put("/api/frames/0/mask", content=video.labels[0].astype(np.uint8).tobytes())
    client.post("/api/propagate")
    wait_until_idle(client)
    assert client.delete("/api/objects/2").json() == {"removed": 2}
    status = client.get("/api/status").json()
    assert [o["id"] for o in status["session"]["objects"]] == [1]
    assert status["plan"] == {"start": 0, "chain_start": 0, "fresh": True}, "object 2 was in frame 0's mask"
    for t in range(FRAMES):
        assert 2 not in labels_of(client.get(f"/api/frames/{t}/mask")), f"frame {t} still shows object 2"
    assert 2 not in read_mask(workspace.session.folder / "given" / "000000.png")


def test_command_line_refusals(inputs, tmp_path, capsys):
    frames, weights = inputs

    def refused(args: list[str], words: str) -> None:
        assert main(["annotate", *map(str, args), "--weights", str(weights), "--no-browser"]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("swiftcuda: error: ") and words in error, error

    refused([tmp_path / "absent"], "input not found")
    refused([frames, "--out", frames / "inside"], "overlap")
    with __import__("socket").socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        refused([frames, "--out", tmp_path / "o", "--port", taken.getsockname()[1]], "cannot listen on 127.0.0.1")
    other = tmp_path / "other"
    write_frames(other, make_video(num_frames=3, height=HEIGHT, width=WIDTH, seed=1).frames)
    AnnotationSession.open(tmp_path / "o" / SESSION_FOLDER, VideoFrames(other, tmp_path / "pictures"))
    refused([frames, "--out", tmp_path / "o"], "holds the session of another video")
    assert build_parser().parse_args(["annotate", str(frames)]).host == "127.0.0.1", "this machine only by default"
