"""Reading a data set in the DAVIS layout.

::

    ROOT/JPEGImages/480p/<sequence>/00000.jpg ...
    ROOT/Annotations/480p/<sequence>/00000.png ...   (indexed PNGs: 0 background, 1..K objects, 255 void)
    ROOT/ImageSets/<year>/<set>.txt                  (one sequence name per line)

DAVIS 2016 (``year="2016"``) is single-object: every object of an annotation is one foreground.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swiftcuda.errors import InputError
from swiftcuda.io.frames import check_frame_files, list_image_files
from swiftcuda.io.masks import read_mask, read_object_mask

YEARS = ("2017", "2016")
VOID_LABEL = 255


def video_files(image_dir: Path, annotation_dir: Path) -> tuple[tuple[Path, ...], dict[str, Path]]:
    """A video's frames (natural order) and its PNG masks by frame name (possibly none).

    Raises:
        InputError: the frames folder is missing or holds no image, or a frame is not an image or
            not of the first frame's size (by the files' headers).
    """
    if not image_dir.is_dir():
        raise InputError(f"no frames folder {image_dir}")
    images = tuple(list_image_files(image_dir))
    if not images:
        raise InputError(f"no frames in {image_dir}")
    check_frame_files(list(images))
    annotations = {}
    if annotation_dir.is_dir():
        annotations = {p.stem: p for p in annotation_dir.iterdir() if p.suffix.lower() == ".png"}
    return images, annotations


@dataclass(frozen=True)
class DavisSequence:
    """The files of one sequence.

    Attributes:
        name: the sequence.
        image_paths: its frames, in order.
        annotation_paths: frame name -> ground-truth mask, for the frames that have one.
        single_object: DAVIS 2016: masks are read as one foreground object.
    """

    name: str
    image_paths: tuple[Path, ...]
    annotation_paths: dict[str, Path]
    single_object: bool = False

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.image_paths]

    def __len__(self) -> int:
        return len(self.image_paths)

    def first_mask(self, warn: bool = True) -> np.ndarray:
        """(H, W) uint8 labels of the first frame, the engine's input: void (255) made background,
        or every object made 1 for a single-object set. A black and white annotation (0 and 255
        only) is one object, 1, not void (saying so unless ``warn`` is False)."""
        first = self.frame_names[0]
        if first not in self.annotation_paths:
            raise InputError(f"sequence {self.name} has no annotation of its first frame {first}")
        if self.single_object:
            return (read_mask(self.annotation_paths[first]) != 0).astype(np.uint8)
        labels = read_object_mask(self.annotation_paths[first], warn=warn)
        return np.where(labels == VOID_LABEL, 0, labels).astype(np.uint8)


class DavisDataset:
    """A DAVIS-layout data set: its sequence list and the files of each sequence.

    Args:
        root: the folder holding JPEGImages, Annotations and ImageSets.
        set_name: which list of ImageSets/<year>/ (``val``, ``train``, ...).
        year: "2017" (multi-object) or "2016" (single-object).
        resolution: the subfolder of JPEGImages and Annotations.

    Raises:
        InputError: the root, the sequence list or the image or annotation folder is missing.
    """

    def __init__(
        self, root: str | os.PathLike, set_name: str = "val", year: str = "2017", resolution: str = "480p"
    ) -> None:
        self.root = Path(root)
        self.set_name, self.year = set_name, str(year)
        if self.year not in YEARS:
            raise InputError(f"unknown DAVIS year {year}: choose {' or '.join(YEARS)}")
        if not self.root.is_dir():
            raise InputError(f"DAVIS folder not found: {self.root}")
        self.images_root = self.root / "JPEGImages" / resolution
        self.annotations_root = self.root / "Annotations" / resolution
        for folder in (self.images_root, self.annotations_root):
            if not folder.is_dir():
                raise InputError(
                    f"{folder} not found: {self.root} is not in the DAVIS layout (JPEGImages/{resolution}, Annotations/{resolution}, ImageSets)"
                )
        self.sequences = read_sequence_list(self.root, set_name, self.year)

    @property
    def single_object(self) -> bool:
        return self.year == "2016"

    def sequence(self, name: str) -> DavisSequence:
        """The files of one sequence.

        Raises:
            InputError: it has no frames, or no annotation of its first frame.
        """
        images, annotations = video_files(self.images_root / name, self.annotations_root / name)
        if images[0].stem not in annotations:
            expected = self.annotations_root / name / (images[0].stem + ".png")
            raise InputError(f"no annotation of the first frame: expected {expected}")
        return DavisSequence(name, images, annotations, self.single_object)


def read_sequence_list(root: str | os.PathLike, set_name: str, year: str = "2017") -> list[str]:
    """The sequence names of ``ROOT/ImageSets/<year>/<set>.txt``, in file order.

    Raises:
        InputError: the list is missing (the message names the lists there are) or empty.
    """
    folder = Path(root) / "ImageSets" / str(year)
    path = folder / f"{set_name}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        hint = f"sets there: {', '.join(available)}" if available else f"no lists in {folder}"
        raise InputError(f"sequence list {path} not found ({hint}): choose --set and --year accordingly")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise InputError(f"sequence list {path} is empty")
    return names


def write_sequence_list(root: str | os.PathLike, set_name: str, year: str, names: list[str]) -> Path:
    """Write ``ROOT/ImageSets/<year>/<set>.txt``."""
    path = Path(root) / "ImageSets" / str(year) / f"{set_name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    return path


def annotation_folder(root: str | os.PathLike, resolution: str = "480p") -> Path:
    """The folder of per-sequence ground-truth masks: ``ROOT/Annotations/<resolution>`` for a DAVIS
    root, else ``ROOT`` itself."""
    root = Path(root)
    nested = root / "Annotations" / resolution
    return nested if nested.is_dir() else root
