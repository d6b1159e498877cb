"""Frame variation of the variation-aware trigger: two counts over the objects' region.

Per pixel: the image varied when the mean absolute RGB change exceeds th_f, the mask varied when
some object's probability changed by more than th_m, and the pixel is in the region when some
object's probability exceeds 0.5 in either frame. Each program counts its block's varied and
region pixels and adds them to the (2,) float32 output with atomics: the partial counts are
integers, exact in float32 below 2**24 pixels, so the order of the additions does not matter.
"""

import triton
import triton.language as tl


@triton.jit
def frame_variation_kernel(
    frame,  # (3, H, W), pixels addressed through (channel stride, flat pixel index)
    previous_frame,  # (3, H, W)
    probs,  # (O, H, W)
    previous_probs,  # (O, H, W)
    counts,  # (2,) float32, zeroed by the caller
    num_objects,
    num_pixels,
    stride_fc,
    stride_pfc,
    stride_po,
    stride_ppo,
    frame_threshold,
    mask_threshold,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < num_pixels
    change = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(3):
        a = tl.load(frame + c * stride_fc + offs, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(previous_frame + c * stride_pfc + offs, mask=mask, other=0.0).to(tl.float32)
        change += tl.abs(a - b)
    image_varied = change / 3.0 > frame_threshold

    mask_change = tl.zeros([BLOCK], dtype=tl.float32)
    current_max = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    previous_max = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    for o in range(num_objects):
        p = tl.load(probs + o * stride_po + offs, mask=mask, other=0.0).to(tl.float32)
        q = tl.load(previous_probs + o * stride_ppo + offs, mask=mask, other=0.0).to(tl.float32)
        mask_change = tl.maximum(mask_change, tl.abs(p - q))
        current_max = tl.maximum(current_max, p)
        previous_max = tl.maximum(previous_max, q)
    region = ((current_max > 0.5) | (previous_max > 0.5)) & mask
    varied = (image_varied | (mask_change > mask_threshold)) & region
    tl.atomic_add(counts, tl.sum(varied.to(tl.float32), axis=0))
    tl.atomic_add(counts + 1, tl.sum(region.to(tl.float32), axis=0))
