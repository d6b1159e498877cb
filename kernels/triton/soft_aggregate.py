"""Soft aggregation: per-object probabilities -> one distribution over background and objects.

Per pixel, the background's probability is the product of the objects' complements; every class
is clamped to [eps, 1 - eps] and the classes' odds ``p / (1 - p)`` are normalised. That is the
softmax over log-odds of STM and SwiftNet without the log and exp: one read of the objects to
build the background and the odds' sum, a second (from cache) to write the normalised odds.
"""

import triton
import triton.language as tl


@triton.jit
def soft_aggregate_kernel(
    probs,  # (O, H, W) addressed as (O, H*W) through its object stride: pixels contiguous
    out,  # (O + 1, H*W) float32
    num_objects,
    num_pixels,
    stride_po,
    eps,
    one_minus_eps,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < num_pixels
    background = tl.full([BLOCK], 1.0, dtype=tl.float32)
    odds_sum = tl.zeros([BLOCK], dtype=tl.float32)
    for o in range(num_objects):
        p = tl.load(probs + o * stride_po + offs, mask=mask, other=0.5).to(tl.float32)
        background *= 1.0 - p
        p = tl.minimum(tl.maximum(p, eps), one_minus_eps)
        odds_sum += p / (1.0 - p)
    background = tl.minimum(tl.maximum(background, eps), one_minus_eps)
    background_odds = background / (1.0 - background)
    inv_sum = 1.0 / (odds_sum + background_odds)
    tl.store(out + offs, background_odds * inv_sum, mask=mask)
    for o in range(num_objects):
        p = tl.load(probs + o * stride_po + offs, mask=mask, other=0.5).to(tl.float32)
        p = tl.minimum(tl.maximum(p, eps), one_minus_eps)
        tl.store(out + (o + 1) * num_pixels + offs, p / (1.0 - p) * inv_sum, mask=mask)
