"""Reading the YouTube-VOS validation layout, where objects may appear after the first frame.

::

    ROOT/valid/JPEGImages/<video>/00000.jpg ...   (the frames to segment)
    ROOT/valid/Annotations/<video>/00000.png ...  (a mask at each frame where new objects appear)
    ROOT/valid/meta.json                          ({"videos": {<video>: {"objects": {<id>: {...}}}}})

An annotation gives the first mask of the objects that appear at its frame; the frames before the
first annotation hold no object. The submission holds an indexed PNG for every frame of
``JPEGImages`` under ``Annotations/<video>/``, at the frame's size, zipped with ``Annotations`` at
the top.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swiftcuda.data.davis import video_files
from swiftcuda.errors import InputError
from swiftcuda.io.frames import natural_key
from swiftcuda.io.masks import read_mask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class YouTubeVideo:
    """The files of one video.

    Attributes:
        name: the video id.
        image_paths: its frames, in order.
        annotation_paths: frame name -> mask, for the frames that have one.
    """

    name: str
    image_paths: tuple[Path, ...]
    annotation_paths: dict[str, Path]

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.image_paths]

    def __len__(self) -> int:
        return len(self.image_paths)

    def new_object_masks(self) -> dict[int, np.ndarray]:
        """Frame index -> (H, W) uint8 labels of the objects that first appear at that frame.

        Ids an earlier annotation already introduced are cleared from a later one, so that the
        engine's prediction of those objects is kept.
        """
        index_of = {name: i for i, name in enumerate(self.frame_names)}
        seen: set[int] = set()
        masks: dict[int, np.ndarray] = {}
        for name in sorted(self.annotation_paths, key=natural_key):
            if name not in index_of:
                logger.warning("video %s: annotation %s.png has no frame; skipped", self.name, name)
                continue
            labels = read_mask(self.annotation_paths[name])
            ids = {int(i) for i in np.unique(labels) if i != 0} - seen
            if not ids:
                continue
            masks[index_of[name]] = np.where(np.isin(labels, sorted(ids)), labels, 0).astype(np.uint8)
            seen |= ids
        return masks


class YouTubeVOSDataset:
    """The validation (or test) split of YouTube-VOS.

    Args:
        root: the data set folder holding ``<split>/``, or the split folder itself.
        split: "valid" or "test".

    Raises:
        InputError: the layout is not found or meta.json is unreadable.
    """

    def __init__(self, root: str | os.PathLike, split: str = "valid") -> None:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"YouTube-VOS folder not found: {root}")
        self.split_root = root / split if (root / split / "JPEGImages").is_dir() else root
        self.images_root = self.split_root / "JPEGImages"
        self.annotations_root = self.split_root / "Annotations"
        for folder in (self.images_root, self.annotations_root):
            if not folder.is_dir():
                raise InputError(
                    f"{folder} not found: {root} is not in the YouTube-VOS layout ({split}/JPEGImages, "
                    f"{split}/Annotations, {split}/meta.json)"
                )
        self.meta = self._read_meta(self.split_root / "meta.json")
        if self.meta is not None:
            self.videos = sorted(self.meta, key=natural_key)
        else:
            self.videos = sorted((p.name for p in self.images_root.iterdir() if p.is_dir()), key=natural_key)
        if not self.videos:
            raise InputError(f"no videos in {self.images_root}")

    @staticmethod
    def _read_meta(path: Path) -> dict | None:
        if not path.is_file():
            logger.info("no %s: videos listed from the frames folder", path)
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            videos = meta["videos"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"{path} is not a YouTube-VOS meta.json with a 'videos' map ({error})") from None
        if not isinstance(videos, dict):
            raise InputError(f"{path}: 'videos' must map video ids to their objects")
        return videos

    def video(self, name: str) -> YouTubeVideo:
        """The files of one video.

        Raises:
            InputError: it has no frames or no annotation.
        """
        images, annotations = video_files(self.images_root / name, self.annotations_root / name)
        if not annotations:
            raise InputError(f"no annotation of video {name}: expected PNG masks in {self.annotations_root / name}")
        return YouTubeVideo(name, images, annotations)
