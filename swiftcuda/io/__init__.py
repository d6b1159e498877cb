"""Reading frames and masks, writing masks and overlays."""

from swiftcuda.io.masks import read_mask, read_object_mask, write_mask
from swiftcuda.io.palette import davis_palette

__all__ = ["davis_palette", "read_mask", "read_object_mask", "write_mask"]
