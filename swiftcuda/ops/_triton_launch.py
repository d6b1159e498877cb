"""Launchers of the Triton kernels: block sizes, grids, strides and workspaces.

Every launcher writes into tensors its caller allocated and goes through
:func:`torch.library.wrap_triton`, so that the same code runs eagerly (the raw kernel), is traced
into a graph by ``torch.compile`` (a ``triton_kernel_wrapper`` node) and, under
``TRITON_INTERPRET=1``, runs the interpreted kernel. Launch decisions depend on shapes only, never
on tensor values, so no launcher synchronises with the device.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import triton
from torch import Tensor

from swiftcuda.kernels.triton.frame_variation import frame_variation_kernel
from swiftcuda.kernels.triton.memory_read import memory_read_combine_kernel, memory_read_kernel
from swiftcuda.kernels.triton.memory_read_family import family_read_kernel, family_usage_kernel
from swiftcuda.kernels.triton.memory_read_topk import topk_readout_kernel, topk_sweep_kernel
from swiftcuda.kernels.triton.memory_update import append_kernel, best_match_kernel, select_novel_kernel
from swiftcuda.kernels.triton.rsp import rsp_kernel
from swiftcuda.kernels.triton.soft_aggregate import soft_aggregate_kernel
from swiftcuda.ops._triton_compat import wrap_triton

#: True when ``TRITON_INTERPRET=1`` was set before triton was imported: the kernels are then
#: Python functions that run on the CPU (and on host copies of CUDA tensors).
INTERPRETED: bool = not isinstance(memory_read_kernel, triton.runtime.JITFunction)

#: Smallest dimension tl.dot accepts.
_MIN_DOT = 16
#: Splitting the memory axis stops at this many entries per split (fewer do not pay for the merge).
_MIN_SPLIT_ENTRIES = 512
#: Tiles of the split merge of the memory read.
_COMBINE_BLOCK_V = 32
_COMBINE_BLOCK_P = 128


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


@dataclasses.dataclass(frozen=True)
class ReadTiles:
    """Tile sizes and launch options of the memory read (see :func:`read_tiles`)."""

    block_p: int
    block_v: int
    block_n: int
    num_warps: int
    num_stages: int
    #: Key channels per dot step; 0: all at once (see kernels/triton/key_tiles.py).
    chunk_ck: int = 0

    def key_chunks(self, key_dim: int) -> tuple[int, int]:
        """(CHUNKS, CHUNK_CK) for ``key_dim`` key channels."""
        whole = _pow2(key_dim, _MIN_DOT)
        if self.chunk_ck == 0 or self.chunk_ck >= whole:
            return 1, whole
        return triton.cdiv(key_dim, self.chunk_ck), self.chunk_ck


def read_tiles(dtype: torch.dtype, key_dim: int, value_dim: int) -> ReadTiles:
    """The memory read's tiles, chosen from the sm_80 / sm_90 resource table
    (``benchmarks/gpu_resources.py``): no spills and at least 16 resident warps per SM at SwiftNet's
    shapes (R18: key 32 / value 128; R50: key 128 / value 512).

    The read is compute-bound in 16-bit (about 2 (Ck + Cv) flops per entry and pixel against
    (Ck + Cv) * 2 bytes per entry and BLOCK_P pixels), so the tiles are as large as the register
    file allows: the float32 accumulator (BLOCK_P x BLOCK_V) and the logits (BLOCK_P x BLOCK_N)
    live in registers, the key and value tiles in shared memory.
    """
    wide_keys = key_dim > 32  # R50's 128 key channels: a (BLOCK_P x Ck) query tile in registers
    if dtype == torch.float32:
        # No tensor cores (exact float32 products): FMA dots, which give each thread whole rows of
        # both operands, so the key channels go 16 at a time and the tiles stay small. Three
        # stages, not two: at R50 Triton 3.6 spills with two (128 registers on sm_90) and keeps
        # 112-116 registers with three (R18: 74-78).
        return ReadTiles(block_p=32, block_v=64, block_n=16, num_warps=8, num_stages=3, chunk_ck=16)
    if wide_keys:
        # R50 (key 128, value 512): on sm_80 every 64-channel value block with 8 warps takes
        # 148-168 registers (8 warps an SM); 32 channels and 4 warps take 124 (16 warps, sm_90: 24).
        # The cost: the logits are recomputed for each of the 16 value blocks (see the roofline).
        return ReadTiles(block_p=64, block_v=32, block_n=16, num_warps=4, num_stages=2)
    # 16 entries a tile and 3 stages: with 32 entries the single-split variant (5+ objects, or the
    # split count forced to one) took more than 128 registers on sm_80 (12 warps an SM), and 2
    # stages did the same to the split variants.
    return ReadTiles(block_p=64, block_v=64, block_n=16, num_warps=4, num_stages=3)


def match_tiles(dtype: torch.dtype, key_dim: int) -> ReadTiles:
    """The best-match sweep's tiles (``block_v`` unused), chosen like :func:`read_tiles`: a
    (BLOCK_P x BLOCK_N) float32 similarity tile in registers, the key tile in shared memory."""
    wide_keys = key_dim > 32
    if dtype == torch.float32:
        # R50's 128 key channels with 32 pixels a tile take 168 registers under Triton 3.6 (12
        # warps an SM); 16 pixels take 96-104. The key tile is then read twice as often, from L2.
        return ReadTiles(block_p=16 if wide_keys else 32, block_v=0, block_n=16, num_warps=4, num_stages=2, chunk_ck=32)
    # The key tile is also read into registers (its norms): narrow tiles for 128 key channels, and
    # 32 entries for R18 (64 take 131 registers on sm_90 under Triton 3.6, 12 warps an SM).
    return ReadTiles(block_p=64, block_v=0, block_n=16 if wide_keys else 32, num_warps=4, num_stages=2)


_ALIGN_BYTES = 16


def _aligned_down(buffer: Tensor, block_n: int) -> tuple[Tensor, int]:
    """``buffer`` (B, C, N) viewed from its last 16-byte-aligned column at or before column 0.

    A view that starts mid-row (the engine's long-term memory starts after the previous frame's
    P columns) is misaligned for 16-bit types, and then no load of it can be vectorised. Viewing
    from ``first`` columns earlier (columns of the same rows, never read: the kernel masks them)
    restores the alignment. Returns (view, first); first is 0 when nothing is gained.
    """
    if buffer.stride(2) != 1 or buffer.shape[2] == 0:
        return buffer, 0
    per_align = max(1, _ALIGN_BYTES // buffer.element_size())
    first = buffer.storage_offset() % per_align
    if first == 0 or first >= block_n or any(s % per_align for s in buffer.stride()[:2]):
        return buffer, 0
    size = (buffer.shape[0], buffer.shape[1], buffer.shape[2] + first)
    return buffer.as_strided(size, buffer.stride(), buffer.storage_offset() - first), first


@dataclasses.dataclass(frozen=True)
class _ReadGrid:
    """A read launch's blocks and grid: query tiles by (item x value block) by memory splits."""

    tiles: ReadTiles
    chunks: int
    chunk_ck: int
    block_p: int
    block_v: int
    splits: int
    grid: tuple[int, int, int]


def _read_grid(
    tiles: ReadTiles,
    device: torch.device,
    batch: int,
    key_dim: int,
    value_dim: int,
    entries: int,
    pixels: int,
    num_splits: int,
) -> _ReadGrid:
    """Blocks clamped to the shape, and the split count (``num_splits`` 0: :func:`auto_splits`)."""
    chunks, chunk_ck = tiles.key_chunks(key_dim)
    block_p = min(tiles.block_p, _pow2(pixels, _MIN_DOT))
    block_v = min(_pow2(value_dim, _MIN_DOT), tiles.block_v)
    query_tiles, value_blocks = triton.cdiv(pixels, block_p), triton.cdiv(value_dim, block_v)
    programs = query_tiles * batch * value_blocks
    splits = num_splits if num_splits > 0 else auto_splits(device, programs, entries)
    return _ReadGrid(tiles, chunks, chunk_ck, block_p, block_v, splits, (query_tiles, batch * value_blocks, splits))


def _split_workspaces(splits: int, batch: int, value_dim: int, pixels: int, out: Tensor) -> tuple[Tensor, Tensor]:
    """(part_acc (S, B, Cv, P), part_ml (S, 2, B, P)) float32: each split's unnormalised readout and
    its running max and sum, for :func:`_merge_splits`."""
    part_acc = torch.empty((splits, batch, value_dim, pixels), dtype=torch.float32, device=out.device)
    part_ml = torch.empty((splits, 2, batch, pixels), dtype=torch.float32, device=out.device)
    return part_acc, part_ml


def _merge_splits(
    part_acc: Tensor, part_ml: Tensor, out: Tensor, splits: int, batch: int, value_dim: int, pixels: int
) -> None:
    """Merge the splits' partial readouts into ``out``'s first Cv channels.

    A memory-bound merge: small tiles keep it in registers (no spills)."""
    combine_v = min(_pow2(value_dim, _MIN_DOT), _COMBINE_BLOCK_V)
    combine_p = min(_COMBINE_BLOCK_P, _pow2(pixels, _MIN_DOT))
    combine_grid = (triton.cdiv(pixels, combine_p), batch * triton.cdiv(value_dim, combine_v))
    wrap_triton(memory_read_combine_kernel)[combine_grid](
        part_acc,
        part_ml,
        out,
        splits,
        batch,
        pixels,
        value_dim,
        *out.stride(),
        BLOCK_V=combine_v,
        BLOCK_P=combine_p,
        num_warps=4,
    )


def _block_constants(g: _ReadGrid, key_dim: int, value_dim: int) -> dict:
    """The read kernels' shared block constants and launch options."""
    return {
        "MASK_C": key_dim % g.chunk_ck != 0,
        "MASK_V": value_dim % g.block_v != 0,
        "CHUNKS": g.chunks,
        "CHUNK_CK": g.chunk_ck,
        "BLOCK_V": g.block_v,
        "BLOCK_N": g.tiles.block_n,
        "BLOCK_P": g.block_p,
        "num_warps": g.tiles.num_warps,
        "num_stages": g.tiles.num_stages,
    }


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
    tiles = read_tiles(mem_key.dtype, key_dim, value_dim)
    g = _read_grid(tiles, mem_key.device, batch, key_dim, value_dim, entries, pixels, num_splits)
    splits = g.splits
    if splits > 1:
        part_acc, part_ml = _split_workspaces(splits, batch, value_dim, pixels, out)
    else:
        part_acc = part_ml = out  # never touched
    wrap_triton(memory_read_kernel)[g.grid](
        mem_key,
        mem_val,
        q_key,
        q_val,
        n_valid if n_valid is not None else mem_key,
        out,
        part_acc,
        part_ml,
        batch,
        entries,
        pixels,
        key_dim,
        value_dim,
        *mem_key.stride(),
        *mem_val.stride(),
        *q_key.stride(),
        *q_val.stride(),
        *out.stride(),
        math.log2(math.e) / math.sqrt(key_dim),
        HAS_N_VALID=n_valid is not None,
        NUM_SPLITS=splits,
        IEEE_DOT=mem_key.dtype == torch.float32,
        UPCAST_DOT=INTERPRETED and mem_key.dtype == torch.bfloat16,
        **_block_constants(g, key_dim, value_dim),
    )
    if splits > 1:
        _merge_splits(part_acc, part_ml, out, splits, batch, value_dim, pixels)


def topk_tiles(dtype: torch.dtype, key_dim: int, selection: bool) -> ReadTiles:
    """The top-k sweep's tiles (``block_v`` unused), chosen from the sm_80 / sm_90 resource table at
    the family's shapes (key 64): a (BLOCK_P x BLOCK_N) float32 logit tile, its int64 keys and the
    (BLOCK_P x KPAD) int64 lists live in registers, the key tile in shared memory. 16 query pixels
    a program: with 32, 4 warps took 168 (16-bit) to 255 (float32) registers, 8 warps 128-174.
    Key channels a chunk at a time in every dtype: in 16-bit each warp of a tensor-core product
    holds the whole (16 x chunk) query operand, three of them with a selection (see
    family_logits), which with all 64 channels at once took 159-168 registers (and spilled at
    Cutie's unaligned rows): 16 channels with a selection, 32 without (with 16, ptxas spilled
    8 bytes on sm_90 at 72 registers)."""
    if dtype == torch.float32 or selection:
        return ReadTiles(block_p=16, block_v=0, block_n=32, num_warps=4, num_stages=2, chunk_ck=16)
    return ReadTiles(block_p=16, block_v=0, block_n=32, num_warps=4, num_stages=2, chunk_ck=32)


def family_read_tiles(dtype: torch.dtype, key_dim: int, value_dim: int) -> ReadTiles:
    """The full-softmax family read's tiles: :func:`read_tiles` with more warps, since the l2
    logits with a selection keep a second query operand in registers and take a second product
    (key 64: with 4 warps 144-166 registers, 8 or 12 warps an SM; with 8 warps 128)."""
    if dtype == torch.float32:
        return ReadTiles(block_p=32, block_v=32, block_n=16, num_warps=8, num_stages=3, chunk_ck=16)
    if key_dim > 32:
        return ReadTiles(block_p=64, block_v=32, block_n=16, num_warps=8, num_stages=2)
    return read_tiles(dtype, key_dim, value_dim)


def family_usage_tiles(dtype: torch.dtype, key_dim: int) -> ReadTiles:
    """The full-softmax usage pass's tiles (``block_v`` unused): the query operands are rebuilt for
    every query tile, so the query tiles are small (16-bit, key 64: 64 pixels took 254 registers)."""
    if dtype == torch.float32:
        return match_tiles(dtype, key_dim)
    return ReadTiles(block_p=16, block_v=0, block_n=32, num_warps=4, num_stages=2)


#: Pixels a program of the top-k readout merges and gathers.
_TOPK_READOUT_BLOCK_P = 16
#: Elements of the readout's (pixels x slots x channels) gather tile, over 8 warps (8192 took 255
#: registers and spilled: a 64-bit address per element).
_TOPK_GATHER_ELEMENTS = 4096
_TOPK_READOUT_WARPS = 8


def _scale_log2(key_dim: int, scale: float | None) -> float:
    """The logit scale in base 2: softmax weights are exp2(scaled logit - max)."""
    return (1.0 / math.sqrt(key_dim) if scale is None else float(scale)) * math.log2(math.e)


def launch_memory_read_family(
    mem_key: Tensor,
    mem_val: Tensor,
    q_key: Tensor,
    q_val: Tensor | None,
    n_valid: Tensor | None,
    out: Tensor,
    usage: Tensor | None = None,
    *,
    affinity: str = "dot",
    scale: float | None = None,
    shrinkage: Tensor | None = None,
    selection: Tensor | None = None,
    top_k: int | None = None,
    num_splits: int = 0,
) -> None:
    """The STM family's read (:func:`swiftcuda.ops.reference.memory_read` with its options).

    Args:
        mem_key: (B, Ck, N); mem_val: (B, Cv, N); q_key: (B, Ck, P).
        q_val: optional (B, Cv, P), copied after the readout.
        n_valid: optional (B,) int32/int64 valid lengths.
        out: (B, 2Cv, P) with ``q_val``, (B, Cv, P) without; fully overwritten.
        usage: optional (B, N) float32, overwritten with each entry's total weight.
        affinity: "dot" or "l2"; shrinkage (B, N) and selection (B, Ck, P) apply to "l2" only.
        scale: logit factor; None for 1/sqrt(Ck).
        top_k: None for the full softmax, else 1 to 64.
        num_splits: memory-axis splits (0: automatic).
    """
    batch, key_dim, entries = mem_key.shape
    value_dim, pixels = mem_val.shape[1], q_key.shape[2]
    l2 = affinity == "l2"
    selection = selection if l2 else None
    shrinkage = shrinkage if l2 else None
    if usage is not None:
        usage.zero_()
    if batch == 0 or pixels == 0:
        return
    scale_log2 = _scale_log2(key_dim, scale)
    placeholder = mem_key  # a pointer for the tensors a launch does not read
    sel = selection if selection is not None else placeholder
    shrink = shrinkage if shrinkage is not None else placeholder
    sel_strides = selection.stride() if selection is not None else (0, 0, 0)
    shrink_strides = shrinkage.stride() if shrinkage is not None else (0, 0)
    lengths = n_valid if n_valid is not None else placeholder
    common = {
        "L2": l2,
        "SELECTION": selection is not None,
        "SHRINKAGE": shrinkage is not None,
        "HAS_N_VALID": n_valid is not None,
        "IEEE_DOT": mem_key.dtype == torch.float32,
        "UPCAST_DOT": INTERPRETED and mem_key.dtype == torch.bfloat16,
    }
    if top_k is not None:
        _launch_topk(
            mem_key,
            mem_val,
            q_key,
            q_val,
            lengths,
            out,
            usage,
            sel,
            shrink,
            sel_strides,
            shrink_strides,
            scale_log2,
            top_k,
            num_splits,
            common,
        )
        return

    tiles = family_read_tiles(mem_key.dtype, key_dim, value_dim)
    g = _read_grid(tiles, mem_key.device, batch, key_dim, value_dim, entries, pixels, num_splits)
    splits = g.splits
    write_stats = usage is not None
    part_acc = part_ml = out  # never touched
    if splits > 1:
        part_acc, part_ml = _split_workspaces(splits, batch, value_dim, pixels, out)
    elif write_stats:
        # The usage pass reads each query's softmax max and sum, which the kernel leaves in part_ml.
        part_ml = torch.empty((1, 2, batch, pixels), dtype=torch.float32, device=out.device)
    q_vals = q_val if q_val is not None else placeholder
    wrap_triton(family_read_kernel)[g.grid](
        mem_key,
        mem_val,
        q_key,
        q_vals,
        sel,
        shrink,
        lengths,
        out,
        part_acc,
        part_ml,
        batch,
        entries,
        pixels,
        key_dim,
        value_dim,
        *mem_key.stride(),
        *mem_val.stride(),
        *q_key.stride(),
        *(q_val.stride() if q_val is not None else (0, 0, 0)),
        *sel_strides,
        *shrink_strides,
        *out.stride(),
        scale_log2,
        HAS_Q_VAL=q_val is not None,
        WRITE_STATS=write_stats,
        NUM_SPLITS=splits,
        **_block_constants(g, key_dim, value_dim),
        **common,
    )
    if splits > 1:
        _merge_splits(part_acc, part_ml, out, splits, batch, value_dim, pixels)
    if usage is not None and entries > 0:
        usage_tiles = family_usage_tiles(mem_key.dtype, key_dim)
        u_chunks, u_chunk_ck = usage_tiles.key_chunks(key_dim)
        u_block_p = min(usage_tiles.block_p, _pow2(pixels, _MIN_DOT))
        wrap_triton(family_usage_kernel)[(triton.cdiv(entries, usage_tiles.block_n), batch)](
            mem_key,
            q_key,
            sel,
            shrink,
            lengths,
            part_ml,
            usage,
            splits,
            batch,
            entries,
            pixels,
            key_dim,
            *mem_key.stride(),
            *q_key.stride(),
            *sel_strides,
            *shrink_strides,
            usage.stride(0),
            scale_log2,
            MASK_C=key_dim % u_chunk_ck != 0,
            CHUNKS=u_chunks,
            CHUNK_CK=u_chunk_ck,
            BLOCK_N=usage_tiles.block_n,
            BLOCK_P=u_block_p,
            num_warps=usage_tiles.num_warps,
            num_stages=usage_tiles.num_stages,
            **common,
        )


def _launch_topk(
    mem_key,
    mem_val,
    q_key,
    q_val,
    lengths,
    out,
    usage,
    sel,
    shrink,
    sel_strides,
    shrink_strides,
    scale_log2: float,
    top_k: int,
    num_splits: int,
    common: dict,
) -> None:
    """The top-k sweep (per-split lists in an int64 workspace) and the merge-softmax-gather readout."""
    batch, key_dim, entries = mem_key.shape
    value_dim, pixels = mem_val.shape[1], q_key.shape[2]
    tiles = topk_tiles(mem_key.dtype, key_dim, common["SELECTION"])
    chunks, chunk_ck = tiles.key_chunks(key_dim)
    kpad = _pow2(top_k)
    block_p = min(tiles.block_p, _pow2(pixels, _MIN_DOT))
    pixel_tiles = triton.cdiv(pixels, block_p)
    # Objects that share their keys, queries, selection and shrinkage (one memory read by several
    # objects' values: batch stride 0) choose the same entries: one sweep serves them all.
    key_side = [mem_key, q_key] + [t for t in (sel, shrink) if t is not mem_key]
    list_items = 1 if not common["HAS_N_VALID"] and all(t.stride(0) == 0 for t in key_side) else batch
    splits = num_splits if num_splits > 0 else auto_splits(mem_key.device, pixel_tiles * list_items, entries)
    lists = torch.empty((splits, list_items, pixels, kpad), dtype=torch.int64, device=out.device)
    wrap_triton(topk_sweep_kernel)[(pixel_tiles, list_items, splits)](
        mem_key,
        q_key,
        sel,
        shrink,
        lengths,
        lists,
        list_items,
        entries,
        pixels,
        key_dim,
        top_k,
        *mem_key.stride(),
        *q_key.stride(),
        *sel_strides,
        *shrink_strides,
        scale_log2,
        NUM_SPLITS=splits,
        MASK_C=key_dim % chunk_ck != 0,
        CHUNKS=chunks,
        CHUNK_CK=chunk_ck,
        KPAD=kpad,
        BLOCK_N=tiles.block_n,
        BLOCK_P=block_p,
        num_warps=tiles.num_warps,
        num_stages=tiles.num_stages,
        **common,
    )
    readout_p = min(_TOPK_READOUT_BLOCK_P, _pow2(pixels))
    block_v = max(1, min(_pow2(value_dim), _TOPK_GATHER_ELEMENTS // (readout_p * kpad)))
    wrap_triton(topk_readout_kernel)[(triton.cdiv(pixels, readout_p), batch)](
        lists,
        mem_val,
        q_val if q_val is not None else mem_val,
        out,
        usage if usage is not None else out,
        splits,
        list_items,
        pixels,
        value_dim,
        top_k,
        *mem_val.stride(),
        *(q_val.stride() if q_val is not None else (0, 0, 0)),
        *out.stride(),
        usage.stride(0) if usage is not None else 0,
        HAS_Q_VAL=q_val is not None,
        HAS_USAGE=usage is not None,
        KPAD=kpad,
        BLOCK_V=block_v,
        BLOCK_P=readout_p,
        num_warps=_TOPK_READOUT_WARPS,
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
    tiles = match_tiles(key_buf.dtype, key_dim)
    chunks, chunk_ck = tiles.key_chunks(key_dim)
    block_p = min(tiles.block_p, _pow2(pixels, _MIN_DOT))
    pixel_tiles = triton.cdiv(pixels, block_p)
    splits = num_splits if num_splits > 0 else auto_splits(device, pixel_tiles * batch, compared)
    best = torch.empty((splits, batch, pixels), dtype=torch.float32, device=device)
    dest = torch.empty((batch, pixels), dtype=torch.int32, device=device)
    lengths = n_valid if n_valid is not None else dest  # a placeholder pointer when unused
    keys, first = _aligned_down(key_buf, tiles.block_n)

    wrap_triton(best_match_kernel)[(pixel_tiles, batch, splits)](
        keys,
        new_key,
        lengths,
        best,
        first,
        compared,
        pixels,
        key_dim,
        *keys.stride(),
        *new_key.stride(),
        batch,
        HAS_N_VALID=n_valid is not None,
        NUM_SPLITS=splits,
        IEEE_DOT=key_buf.dtype == torch.float32,
        UPCAST_DOT=INTERPRETED and key_buf.dtype == torch.bfloat16,
        MASK_C=key_dim % chunk_ck != 0,
        CHUNKS=chunks,
        CHUNK_CK=chunk_ck,
        BLOCK_N=tiles.block_n,
        BLOCK_P=block_p,
        num_warps=tiles.num_warps,
        num_stages=tiles.num_stages,
    )
    block = _pow2(pixels, _MIN_DOT)
    wrap_triton(select_novel_kernel)[(batch,)](
        best,
        lengths,
        dest,
        pixels,
        count,
        capacity,
        compared,
        splits,
        batch,
        HAS_N_VALID=n_valid is not None,
        BLOCK=block,
        num_warps=8 if block >= 2048 else 4,
    )
    append_block_p = min(128, _pow2(pixels, _MIN_DOT))
    wrap_triton(append_kernel)[(triton.cdiv(pixels, append_block_p), batch)](
        dest,
        new_key,
        new_val,
        key_buf,
        val_buf,
        pixels,
        key_dim,
        value_dim,
        *new_key.stride(),
        *new_val.stride(),
        *key_buf.stride(),
        *val_buf.stride(),
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
        probs,
        own,
        others,
        objects,
        factor,
        cells_h,
        cells_w,
        *probs.stride(),
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
        probs,
        out,
        objects,
        pixels,
        probs.stride(0),
        eps,
        1.0 - eps,
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
        frame,
        previous_frame,
        object_probs,
        previous_probs,
        counts,
        objects,
        pixels,
        frame.stride(0),
        previous_frame.stride(0),
        object_probs.stride(0),
        previous_probs.stride(0),
        float(frame_threshold),
        float(mask_threshold),
        BLOCK=_ELEMENTWISE_BLOCK,
        num_warps=4,
    )
