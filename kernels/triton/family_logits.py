"""The logits of the STM family's reads (XMem, Cutie, STCN, STM, SwiftNet), one tile at a time.

A tile is (BLOCK_P query pixels) x (BLOCK_N memory entries) of float32 logits in base 2 (the
logit scale times log2(e), so that softmax weights are ``exp2(logit - max)``)::

    dot:                  mk . qk
    l2, no selection:     2 mk . qk - |mk|^2
    l2, selection qe:     2 mk . (qk qe) - (mk mk) . qe - sum_c(qe qk^2)

an l2 logit times the entry's shrinkage when one is given, every logit times the scale.

Why in-kernel operands rather than augmented tensors: the l2 logit with a selection is a dot
product of augmented operands, ``[mk; mk*mk]`` against ``[2 qk qe; -qe]`` plus a per-query offset.
The query side is built per query tile in registers (``query_operands``, one pass over a
(BLOCK_P, Ck) tile that the sweep then re-uses for every memory tile); the key side,
``mk * mk``, is squared from the key tile already loaded for the first product, so it costs
Ck x BLOCK_N multiplies per tile and no memory traffic, where an augmented key tensor would be
written and read back (2 Ck x N elements per call). Both products go to the tensor cores in 16-bit
and run as exact float32 FMAs in float32. Without a selection the squared norm of each key is a
column sum of the same squares (float32).

For the top-k (``SPLIT``), 16-bit operands of the selection's products are exact: ``2 qk qe`` and
``mk * mk`` are products of two 16-bit values (at most 22 significant bits in float16, 16 in
bfloat16), which a high part (the value rounded to the dtype) plus a low part (the remainder,
rounded to the dtype) hold exactly, and each part goes through its own tensor-core product.
Rounding them once moves the logits by about 2^-12 (float16) to 2^-9 (bfloat16) of their terms,
enough to swap two nearly tied logits at the k-th place that every float32 computation orders
alike; the two extra products per chunk are cheap beside the top-k bookkeeping of each tile. The
full softmax is continuous in the logits, so there one rounding (as PyTorch's own half-precision
read rounds them, and more) stays within the half-precision tolerance, and the registers of the
low parts (a third query operand for the whole sweep) are saved.

The query-only term ``-sum_c(qe qk^2)`` does not change a query's softmax, but it is kept: with a
shrinkage it is scaled per entry, and the top-k ranks the logits themselves.
"""

import triton
import triton.language as tl

from .key_tiles import dot_f32, load_key_tile


@triton.jit
def query_operands(
    q_ptrs,
    e_ptrs,
    chunk,
    mask_p,
    key_dim,
    stride_qc,
    stride_ec,
    L2: tl.constexpr,
    SELECTION: tl.constexpr,
    SPLIT: tl.constexpr,
    CHUNK_CK: tl.constexpr,
):
    """Channel chunk ``chunk`` of the query operands (BLOCK_P, CHUNK_CK), in the keys' dtype.

    Returns (a, a_low, b): ``a`` multiplies the keys (qk, 2 qk or 2 qk qe), ``a_low`` is the part of
    ``2 qk qe`` that ``a`` could not hold (``SPLIT``: 16-bit inputs with a selection; else 0.0),
    ``b`` multiplies the squared keys (-qe; 0.0 without a selection). Padding channels and pixels
    are 0.
    """
    mask_c = chunk * CHUNK_CK + tl.arange(0, CHUNK_CK) < key_dim
    mask = mask_p[:, None] & mask_c[None, :]
    q = tl.load(q_ptrs + chunk * CHUNK_CK * stride_qc, mask=mask, other=0.0)
    a_low = 0.0
    if SELECTION:
        e = tl.load(e_ptrs + chunk * CHUNK_CK * stride_ec, mask=mask, other=0.0)
        product = 2.0 * q.to(tl.float32) * e.to(tl.float32)
        a = product.to(q.dtype)
        if SPLIT:
            a_low = (product - a.to(tl.float32)).to(q.dtype)
        b = (-e.to(tl.float32)).to(q.dtype)
    elif L2:
        a = (2.0 * q.to(tl.float32)).to(q.dtype)
        b = 0.0
    else:
        a = q
        b = 0.0
    return a, a_low, b


@triton.jit
def query_offset(
    q_ptrs,
    e_ptrs,
    mask_p,
    key_dim,
    stride_qc,
    stride_ec,
    CHUNKS: tl.constexpr,
    CHUNK_CK: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """-sum_c(qe qk^2) per query pixel (BLOCK_P,), float32: the l2 logit's query-only term."""
    total = tl.zeros([BLOCK_P], dtype=tl.float32)
    for chunk in tl.static_range(CHUNKS):
        mask_c = chunk * CHUNK_CK + tl.arange(0, CHUNK_CK) < key_dim
        mask = mask_p[:, None] & mask_c[None, :]
        q = tl.load(q_ptrs + chunk * CHUNK_CK * stride_qc, mask=mask, other=0.0).to(tl.float32)
        e = tl.load(e_ptrs + chunk * CHUNK_CK * stride_ec, mask=mask, other=0.0).to(tl.float32)
        total += tl.sum(e * q * q, axis=1)
    return -total


@triton.jit
def family_logits(
    qa,
    qa_low,
    qb,
    q_offset,
    q_ptrs,
    e_ptrs,
    mask_p,
    key_ptrs,
    valid_n,
    shrink,
    key_dim,
    stride_qc,
    stride_ec,
    stride_kc,
    scale,
    L2: tl.constexpr,
    SELECTION: tl.constexpr,
    SPLIT: tl.constexpr,  # 16-bit selection operands as exact high + low parts (see the module docstring)
    SHRINKAGE: tl.constexpr,
    MASK_N: tl.constexpr,  # a tile with entries outside the valid range: masked key loads
    MASK_C: tl.constexpr,  # key channels not a multiple of CHUNK_CK
    IEEE_DOT: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
    CHUNKS: tl.constexpr,
    CHUNK_CK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Logits (BLOCK_P, BLOCK_N) float32 of the tile whose key columns ``key_ptrs`` points at
    (channel 0 of each entry), times ``scale`` (the caller's base-2 scale).

    With ``CHUNKS`` == 1, ``qa`` / ``qa_low`` / ``qb`` are the register-resident query operands of
    :func:`query_operands`; otherwise each chunk is built from ``q_ptrs`` / ``e_ptrs``.
    ``q_offset`` (BLOCK_P,) is :func:`query_offset` (selection only), ``shrink`` (BLOCK_N,) the
    entries' shrinkage (float32). Entries outside ``valid_n`` come out finite and must be masked
    by the caller.
    """
    dots = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    norm2 = tl.zeros([BLOCK_N], dtype=tl.float32)
    for chunk in tl.static_range(CHUNKS):
        k = load_key_tile(key_ptrs, chunk, valid_n, key_dim, stride_kc, MASK_N, MASK_C, CHUNK_CK)
        if CHUNKS > 1:
            qa, qa_low, qb = query_operands(
                q_ptrs, e_ptrs, chunk, mask_p, key_dim, stride_qc, stride_ec, L2, SELECTION, SPLIT, CHUNK_CK
            )
        dots = dot_f32(qa, k, dots, IEEE_DOT, UPCAST_DOT)
        if SELECTION:
            k32 = k.to(tl.float32)
            square = k32 * k32
            high = square.to(k.dtype)
            dots = dot_f32(qb, high, dots, IEEE_DOT, UPCAST_DOT)
            if SPLIT:
                dots = dot_f32(qa_low, k, dots, IEEE_DOT, UPCAST_DOT)
                dots = dot_f32(qb, (square - high.to(tl.float32)).to(k.dtype), dots, IEEE_DOT, UPCAST_DOT)
        elif L2:
            k32 = k.to(tl.float32)
            norm2 += tl.sum(k32 * k32, axis=0)
    if SELECTION:
        dots += q_offset[:, None]
    elif L2:
        dots -= norm2[None, :]
    if SHRINKAGE:
        dots = dots * shrink[None, :]
    return dots * scale
