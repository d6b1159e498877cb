"""Launchers of the Triton kernels: block sizes, grids, strides and workspaces.

Every launcher writes into tensors its caller allocated and goes through
:func:`torch.library.wrap_triton`, so that the same code runs eagerly (the raw kernel), is traced
into a graph by ``torch.compile`` (a ``triton_kernel_wrapper`` node) and, under
``TRITON_INTERPRET=1``, runs the interpreted kernel. Launch decisions depend on shapes only, never
on tensor values, so no launcher synchronises with the device.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
from torch import Tensor
from torch.library import wrap_triton

from swiftcuda.kernels.triton.frame_variation import frame_variation_kernel
from swiftcuda.kernels.triton.memory_read import memory_read_combine_kernel, memory_read_kernel
from swiftcuda.kernels.triton.memory_update import append_kernel, best_match_kernel, select_novel_kernel
from swiftcuda.kernels.triton.rsp import rsp_kernel
from swiftcuda.kernels.triton.soft_aggregate import soft_aggregate_kernel

#: True when ``TRITON_INTERPRET=1`` was set before triton was imported: the kernels are then
#: Python functions that run on the CPU (and on host copies of CUDA tensors).
INTERPRETED: bool = not isinstance(memory_read_kernel, triton.runtime.JITFunction)

#: Smallest dimension tl.dot accepts.
_MIN_DOT = 16
#: Splitting the memory axis stops at this many entries per split (fewer do not pay for the merge).
_MIN_SPLIT_ENTRIES = 512


def _pow2(n: int, floor: int = 1) -> int:
    return max(triton.next_power_of_2(max(n, 1)), floor)


@functools.cache
def _multiprocessors(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def auto_splits(device: torch.device, tiles: int, entries: int) -> int:
    """How many programs share each tile's sweep over ``entries`` memory entries.

    Aims at two programs per streaming multiprocessor, with at least ``_MIN_SPLIT_ENTRIES`` entries
    each. On the CPU (the interpreter) it is 1: splitting only adds work there.
    """
    if device.type != "cuda" or INTERPRETED or tiles == 0:
        return 1
    wanted = math.ceil(2 * _multiprocessors(device.index or 0) / tiles)
    return max(1, min(wanted, entries // _MIN_SPLIT_ENTRIES))


def _dot_blocks(dtype: torch.dtype, key_dim: int) -> tuple[int, int, int]:
    """(BLOCK_CK, BLOCK_N, BLOCK_P) for the key dot products."""
    block_ck = _pow2(key_dim, _MIN_DOT)
    # float32 tiles take twice the registers and shared memory of half ones.
    block_n = 32 if dtype == torch.float32 and block_ck >= 128 else 64
    return block_ck, block_n, 64


def launch_memory_read(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor,
    n_valid: Tensor | None,
    out: Tensor,
    num_splits: int = 0,
) -> None:
    """Write ``[softmax read, q_val]`` into ``out`` (B, 2Cv, P); ``num_splits`` 0 chooses."""
    batch, key_dim, entries = mem_key.shape
    value_dim, pixels = mem_val.shape[1], q_key.shape[2]
    if batch == 0 or pixels == 0:
        return
    block_ck, block_n, block_p = _dot_blocks(mem_key.dtype, key_dim)
    block_p = min(block_p, _pow2(pixels, _MIN_DOT))
    block_v = min(_pow2(value_dim, _MIN_DOT), 128)
    value_blocks = triton.cdiv(value_dim, block_v)
    tiles = triton.cdiv(pixels, block_p) * batch * value_blocks
    splits = num_splits if num_splits > 0 else auto_splits(mem_key.device, tiles, entries)
    if splits > 1:
        part_acc = torch.empty((splits, batch, value_dim, pixels), dtype=torch.float32, device=out.device)
        part_ml = torch.empty((splits, 2, batch, pixels), dtype=torch.float32, device=out.device)
    else:
        part_acc = part_ml = out  # never touched
    grid = (triton.cdiv(pixels, block_p), batch * value_blocks, splits)
    wrap_triton(memory_read_kernel)[grid](
        mem_key, mem_val, q_key, q_val, n_valid if n_valid is not None else mem_key, out, part_acc, part_ml,
        batch, entries, pixels, key_dim, value_dim,
        *mem_key.stride(), *mem_val.stride(), *q_key.stride(), *q_val.stride(), *out.stride(),
        math.log2(math.e) / math.sqrt(key_dim),
        HAS_N_VALID=n_valid is not None,
        NUM_SPLITS=splits,
        IEEE_DOT=mem_key.dtype == torch.float32,
        UPCAST_DOT=INTERPRETED and mem_key.dtype == torch.bfloat16,
        BLOCK_CK=block_ck,
        BLOCK_V=block_v,
        BLOCK_N=block_n,
        BLOCK_P=block_p,
        num_warps=4,
        num_stages=2,
    )
    if splits > 1:
        wrap_triton(memory_read_combine_kernel)[grid[:2]](
            part_acc, part_ml, out, splits, batch, pixels, value_dim, *out.stride(),
            BLOCK_V=block_v,
            BLOCK_P=block_p,
            num_warps=4,
        )


def launch_memory_update(
    key_buf: Tensor,
    val_buf: Tensor,
    n_valid: Tensor | None,
    new_key: Tensor,
    new_val: Tensor,
    count: int,
    compared: int,
    num_splits: int = 0,
) -> None:
    """Append the ``count`` most novel new pixels of each item to the buffers.

    Args:
        key_buf: (B, Ck, capacity) key buffer, written from column ``n_valid[b]`` (or ``compared``).
        val_buf: (B, Cv, capacity) value buffer, likewise.
        n_valid: (B,) valid lengths, read and advanced; None: the first ``compared`` columns are
            the memory and the new pixels go right after them.
        new_key: (B, Ck, P) new keys; new_val: (B, Cv, P) new values.
        count: pixels appended per item, 1 <= count <= P.
        compared: columns of ``key_buf`` that may hold valid memory (the capacity, or N).
        num_splits: memory splits of the similarity sweep; 0 chooses.
    """
    batch, key_dim, capacity = key_buf.shape
    value_dim, pixels = val_buf.shape[1], new_key.shape[2]
    if batch == 0 or pixels == 0 or count == 0:
        return
    device = key_buf.device
    block_ck, block_n, block_p = _dot_blocks(key_buf.dtype, key_dim)
    block_p = min(block_p, _pow2(pixels, _MIN_DOT))
    pixel_tiles = triton.cdiv(pixels, block_p)
    splits = num_splits if num_splits > 0 else auto_splits(device, pixel_tiles * batch, compared)
    best = torch.empty((splits, batch, pixels), dtype=torch.float32, device=device)
    dest = torch.empty((batch, pixels), dtype=torch.int32, device=device)
    lengths = n_valid if n_valid is not None else dest  # a placeholder pointer when unused

    wrap_triton(best_match_kernel)[(pixel_tiles, batch, splits)](
        key_buf, new_key, lengths, best,
        compared, pixels, key_dim,
        *key_buf.stride(), *new_key.stride(),
        batch,
        HAS_N_VALID=n_valid is not None,
        NUM_SPLITS=splits,
        IEEE_DOT=key_buf.dtype == torch.float32,
        UPCAST_DOT=INTERPRETED and key_buf.dtype == torch.bfloat16,
        BLOCK_CK=block_ck,
        BLOCK_N=block_n,
        BLOCK_P=block_p,
        num_warps=4,
        num_stages=2,
    )
    block = _pow2(pixels, _MIN_DOT)
    wrap_triton(select_novel_kernel)[(batch,)](
        best, lengths, dest,
        pixels, count, capacity, compared, splits, batch,
        HAS_N_VALID=n_valid is not None,
        BLOCK=block,
        num_warps=8 if block >= 2048 else 4,
    )
    append_block_p = min(128, _pow2(pixels, _MIN_DOT))
    wrap_triton(append_kernel)[(triton.cdiv(pixels, append_block_p), batch)](
        dest, new_key, new_val, key_buf, val_buf,
        pixels, key_dim, value_dim,
        *new_key.stride(), *new_val.stride(), *key_buf.stride(), *val_buf.stride(),
        BLOCK_C=32,
        BLOCK_P=append_block_p,
        num_warps=4,
    )


def launch_rsp(probs: Tensor, factor: int, own: Tensor, others: Tensor) -> None:
    """Write ``own`` and ``others`` (O, f*f, H/f, W/f), contiguous, from probs (O, H, W)."""
    objects, height, width = probs.shape
    cells_h, cells_w = height // factor, width // factor
    if objects == 0 or cells_h == 0 or cells_w == 0:
        return
    block_f = _pow2(factor)
    # About 4096 elements a tile: a few cell columns at factor 16, more at small factors.
    block_w = min(_pow2(cells_w), max(1, 4096 // (block_f * block_f)))
    wrap_triton(rsp_kernel)[(cells_h, triton.cdiv(cells_w, block_w))](
        probs, own, others,
        objects, factor, cells_h, cells_w, *probs.stride(),
        BLOCK_F=block_f,
        BLOCK_W=block_w,
        num_warps=4,
    )


def _flat_pixels(tensor: Tensor) -> Tensor:
    """``tensor`` (C, H, W) with its pixels addressable as ``c * stride(0) + y * W + x``."""
    _, height, width = tensor.shape
    if tensor.stride(2) == 1 and (tensor.stride(1) == width or height == 1):
        return tensor
    return tensor.contiguous()


_ELEMENTWISE_BLOCK = 1024


def launch_soft_aggregate(object_probs: Tensor, out: Tensor, eps: float) -> None:
    """Write the (O + 1, H, W) contiguous float32 ``out`` from object_probs (O, H, W)."""
    objects, height, width = object_probs.shape
    pixels = height * width
    if pixels == 0:
        return
    probs = _flat_pixels(object_probs)
    wrap_triton(soft_aggregate_kernel)[(triton.cdiv(pixels, _ELEMENTWISE_BLOCK),)](
        probs, out, objects, pixels, probs.stride(0), eps, 1.0 - eps,
        BLOCK=_ELEMENTWISE_BLOCK,
        num_warps=4,
    )


def launch_frame_variation(
    frame: Tensor,
    previous_frame: Tensor,
    object_probs: Tensor,
    previous_probs: Tensor,
    frame_threshold: float,
    mask_threshold: float,
    counts: Tensor,
) -> None:
    """Add [varied pixels of the region, pixels of the region] into the zeroed (2,) ``counts``."""
    objects, height, width = object_probs.shape
    pixels = height * width
    if pixels == 0:
        return
    frame, previous_frame = _flat_pixels(frame), _flat_pixels(previous_frame)
    object_probs, previous_probs = _flat_pixels(object_probs), _flat_pixels(previous_probs)
    wrap_triton(frame_variation_kernel)[(triton.cdiv(pixels, _ELEMENTWISE_BLOCK),)](
        frame, previous_frame, object_probs, previous_probs, counts,
        objects, pixels,
        frame.stride(0), previous_frame.stride(0), object_probs.stride(0), previous_probs.stride(0),
        float(frame_threshold), float(mask_threshold),
        BLOCK=_ELEMENTWISE_BLOCK,
        num_warps=4,
    )
