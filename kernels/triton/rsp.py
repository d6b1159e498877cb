"""Reversed sub-pixel (RSP): every object's own map and the union of the others, pixel-unshuffled.

One program covers one row of factor x factor cells (all objects, a block of cell columns). It
reads each object's tile once to sum all objects, then takes each object's own map (the same tile,
now in cache) and writes it and ``clamp(total - own, 0, 1)`` straight in pixel_unshuffle layout:
input pixel ``(o, hy * f + i, wx * f + j)`` goes to channel ``i * f + j``, cell ``(hy, wx)``.
Tiles are addressed as ``(i, j, wx)`` so that both the reads (along j) and the writes (along wx)
run over contiguous memory; the compiler moves the data between the two layouts on chip.
The sums are float32; ``own`` is an exact copy, ``others`` is rounded once to the output dtype.
"""

import triton
import triton.language as tl


@triton.jit
def rsp_kernel(
    probs,  # (O, H, W)
    own,  # (O, f*f, H/f, W/f) contiguous
    others,  # (O, f*f, H/f, W/f) contiguous
    num_objects,
    factor,
    cells_h,
    cells_w,
    stride_po,
    stride_ph,
    stride_pw,
    BLOCK_F: tl.constexpr,  # power of two >= factor
    BLOCK_W: tl.constexpr,  # cell columns per program
):
    row = tl.program_id(0)
    pid_w = tl.program_id(1)
    i = tl.arange(0, BLOCK_F)[:, None, None]
    j = tl.arange(0, BLOCK_F)[None, :, None]
    wx = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)[None, None, :]
    mask = (i < factor) & (j < factor) & (wx < cells_w)
    src = (row * factor + i) * stride_ph + (wx * factor + j) * stride_pw
    dst = ((i * factor + j) * cells_h + row) * cells_w + wx
    plane = factor * factor * cells_h * cells_w

    total = tl.zeros([BLOCK_F, BLOCK_F, BLOCK_W], dtype=tl.float32)
    for o in range(num_objects):
        total += tl.load(probs + o * stride_po + src, mask=mask, other=0.0).to(tl.float32)
    for o in range(num_objects):
        mine = tl.load(probs + o * stride_po + src, mask=mask, other=0.0)
        tl.store(own + o * plane + dst, mine, mask=mask)
        rest = tl.minimum(tl.maximum(total - mine.to(tl.float32), 0.0), 1.0)
        tl.store(others + o * plane + dst, rest.to(others.dtype.element_ty), mask=mask)
