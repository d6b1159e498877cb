"""The annotation session without the server: where runs start, what each frame shows, what survives a
restart; and the video's frames, from folders and video files."""

from __future__ import annotations

import contextlib
import os

import cv2
import numpy as np
import pytest

from swiftcuda.annotate import AnnotationSession, VideoFrames
from swiftcuda.annotate import session as session_module
from swiftcuda.annotate.errors import Conflict, RequestError
from swiftcuda.annotate.session import Plan
from swiftcuda.io.frames import FrameSource
from tests.annotate.helpers import write_frames
from tests.videos import make_video

HEIGHT, WIDTH, FRAMES = 24, 32, 12


@pytest.fixture
def video(tmp_path):
    clip = make_video(num_frames=FRAMES, height=HEIGHT, width=WIDTH, object_ids=(1,), seed=3)
    return write_frames(tmp_path / "frames", clip.frames)


def open_session(video, folder) -> AnnotationSession:
    return AnnotationSession.open(folder, VideoFrames(video, folder / "pictures"))


def square(value: int = 1) -> np.ndarray:
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[5:15, 8:20] = value
    return labels


def run_through(session: AnnotationSession, stop: int | None = None) -> Plan:
    """What a propagation does to the session (the engine's masks replaced by a pattern)."""
    plan = session.plan()
    session.begin_run(plan)
    for index in range(plan.start, FRAMES if stop is None else stop + 1):
        session.publish(index, square() * (index % 2))
    session.end_run()
    return plan


def expanded(session: AnnotationSession) -> list[str]:
    kinds = []
    for kind, first, last in session.frame_runs():
        kinds += [kind] * (last - first + 1)
    return kinds


def test_runs_start_where_the_masks_changed(video, tmp_path):
    session = open_session(video, tmp_path / "session")
    with pytest.raises(RequestError, match="no frame has a mask yet"):
        session.plan()
    session.add_object()
    session.set_given(3, np.zeros((HEIGHT, WIDTH), np.uint8))
    with pytest.raises(RequestError, match="no frame has a mask yet"):
        session.plan()  # a given mask of background only cannot start the engine
    session.set_given(3, square())
    assert run_through(session, stop=7) == Plan(start=3, chain_start=3, fresh=True)
    assert expanded(session) == ["none"] * 3 + ["given"] + ["predicted"] * 4 + ["none"] * 4
    assert session.plan() == Plan(start=8, chain_start=3, fresh=False), "a stopped run resumes where it stopped"
    session.set_given(5, square())
    assert expanded(session)[3:9] == ["given", "predicted", "given", "stale", "stale", "none"]
    assert session.plan() == Plan(start=5, chain_start=3, fresh=False), "a correction resumes at its frame"
    run_through(session)
    assert expanded(session) == ["none"] * 3 + ["given", "predicted", "given"] + ["predicted"] * 6
    with pytest.raises(Conflict, match="up to date"):
        session.plan()
    # Removing a correction shows its frame's own prediction again when there is one.
    session.set_given(9, square(0))
    session.clear_given(9)
    assert session.kind(9) == "predicted" and session.plan() == Plan(start=9, chain_start=3, fresh=False)
    # A mask before the chain's first frame starts the chain anew there.
    session.set_given(1, square())
    assert session.plan() == Plan(start=1, chain_start=1, fresh=True)
    run_through(session)
    # Without the first given frame, the chain starts anew at the next one and what came before goes.
    session.clear_given(1)
    assert session.plan() == Plan(start=3, chain_start=3, fresh=True)
    session.begin_run(session.plan())
    assert session.labels(2) is None, "a prediction of a chain that no longer exists is removed"
    session.end_run()


def test_frame_runs_agree_with_every_frames_kind(video, tmp_path):
    session = open_session(video, tmp_path / "session")
    session.add_object()
    generator = np.random.default_rng(4)
    for _ in range(30):
        index = int(generator.integers(FRAMES))
        action = generator.integers(3)
        if action == 0:
            session.set_given(index, square())
        elif action == 1 and session.given_mask(index) is not None:
            session.clear_given(index)
        else:
            with contextlib.suppress(RequestError, Conflict):
                run_through(session, stop=int(generator.integers(FRAMES)))
        assert expanded(session) == [session.kind(t) for t in range(FRAMES)]


def test_a_killed_server_loses_nothing(video, tmp_path, monkeypatch):
    folder = tmp_path / "session"
    session = open_session(video, folder)
    session.add_object()
    session.set_given(0, square())
    monkeypatch.setattr(session_module, "RUN_SAVE_INTERVAL", 1e9)  # session.json is not rewritten during the run
    session.begin_run(session.plan())
    for index in range(8):
        session.publish(index, square() * (index % 2))
    # The process dies here: no end_run, no save. What was written is all there is.
    reopened = open_session(video, folder)
    assert reopened.objects == {1: "object 1"} and np.array_equal(reopened.given_mask(0), square())
    for index in range(1, 8):
        assert np.array_equal(reopened.labels(index), session.labels(index)), f"frame {index}'s mask was lost"
    assert {reopened.kind(t) for t in range(1, 8)} == {"stale"}, "unconfirmed masks are recomputed by the next run"
    assert reopened.plan() == Plan(start=0, chain_start=0, fresh=True)
    assert not list(folder.rglob("*.partial*")), "no half-written file"


def test_a_video_file_decodes_as_segment_decodes_it(tmp_path):
    clip = make_video(num_frames=6, height=HEIGHT, width=WIDTH, object_ids=(1,), seed=5)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, (WIDTH, HEIGHT))
    for frame in clip.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    progress = []
    frames = VideoFrames(path, tmp_path / "pictures", progress=lambda done, total: progress.append(done))
    assert frames.is_video and len(frames) == 6 and frames.names == [f"{i:05d}" for i in range(6)]
    assert frames.size == (HEIGHT, WIDTH) and frames.fps == pytest.approx(12) and progress[-1] == 6
    expected = list(FrameSource(path))
    got = list(frames.iter_from(2))
    assert [f.index for f in got] == [2, 3, 4, 5] and [f.name for f in got] == [f.name for f in expected[2:]]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(got, expected[2:], strict=True)), (
        "the engine's frames are segment's"
    )
    picture, media_type = frames.picture(4)
    assert media_type == "image/jpeg" and cv2.imread(str(picture)).shape == (HEIGHT, WIDTH, 3)
    made = picture.stat().st_mtime_ns
    again = VideoFrames(path, tmp_path / "pictures")
    assert len(again) == 6 and again.picture(4)[0].stat().st_mtime_ns == made, "pictures are made once"
    with pytest.raises(IndexError, match="frame 6 is out of range"):
        frames.picture(6)


def test_frames_a_browser_cannot_show_or_outside_input_are_encoded(tmp_path):
    clip = make_video(num_frames=2, height=HEIGHT, width=WIDTH, object_ids=(1,), seed=6)
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.tif"), cv2.cvtColor(clip.frames[0], cv2.COLOR_RGB2BGR))
    outside = tmp_path / "elsewhere.jpg"
    cv2.imwrite(str(outside), cv2.cvtColor(clip.frames[1], cv2.COLOR_RGB2BGR))
    os.symlink(outside, folder / "b.jpg")
    frames = VideoFrames(folder, tmp_path / "pictures")
    for index in range(2):
        content, media_type = frames.picture(index)
        assert isinstance(content, bytes) and media_type == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR).shape == (HEIGHT, WIDTH, 3)
