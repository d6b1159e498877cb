"""Memory read: softmax attention of every query pixel over the memory, flash style.

For each item b and query pixel p::

    read[b, :, p] = sum_n mem_val[b, :, n] * softmax_n(mem_key[b, :, n] . q_key[b, :, p] / sqrt(Ck))

over the valid entries ``n < n_valid[b]``. The P x N logits never leave the chip: each program keeps
a running maximum ``m``, a running normaliser ``l`` and a float32 accumulator for one tile of query
pixels and one block of value channels, and streams the memory in BLOCK_N-entry tiles (online
softmax). Exponentials are base 2 with ``log2(e) / sqrt(Ck)`` folded into the logit scale.

When the query tiles are too few to fill the GPU (one object at 480p has about 26 tiles of 64
pixels), the memory axis is split across programs (``NUM_SPLITS`` > 1): each split writes its
partial ``(m, l, acc)`` to a float32 workspace and :func:`memory_read_combine_kernel` merges them.

Tensors are addressed through explicit strides, so strided views (a fixed-capacity buffer's
prefix) and stride-0 batch expansions (one query shared by every object) need no copy.
"""

import triton
import triton.language as tl

from .key_tiles import dot_f32, key_products


@triton.jit
def _attend_tile(
    q,
    q_ptrs,
    mask_p,
    m_i,
    l_i,
    acc,
    key_ptrs,
    val_base,
    n0,
    lo,
    hi,
    key_dim,
    mask_v,
    qk_scale,
    stride_qc,
    stride_kc,
    stride_kn,
    stride_vn,
    MASK_N: tl.constexpr,  # a tile with entries outside [lo, hi): masked loads and logits
    MASK_C: tl.constexpr,  # key channels not a multiple of CHUNK_CK
    MASK_V: tl.constexpr,  # value channels not a multiple of BLOCK_V
    IEEE_DOT: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
    CHUNKS: tl.constexpr,
    CHUNK_CK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """One memory tile of the online softmax: (m, l, acc) updated with entries n0 .. n0 + BLOCK_N."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    valid_n = (offs_n >= lo) & (offs_n < hi)
    logits, _ = key_products(
        q,
        q_ptrs,
        mask_p,
        key_ptrs + offs_n[None, :] * stride_kn,
        valid_n,
        key_dim,
        stride_qc,
        stride_kc,
        MASK_N,
        MASK_C,
        IEEE_DOT,
        UPCAST_DOT,
        CHUNKS,
        CHUNK_CK,
        BLOCK_P,
        BLOCK_N,
    )
    v_ptrs = val_base + offs_n[:, None] * stride_vn  # (BLOCK_N, BLOCK_V)
    if MASK_N:
        v = tl.load(v_ptrs, mask=valid_n[:, None] & mask_v[None, :], other=0.0)
    elif MASK_V:
        v = tl.load(v_ptrs, mask=mask_v[None, :], other=0.0)
    else:
        v = tl.load(v_ptrs)
    logits = logits * qk_scale  # (BLOCK_P, BLOCK_N)
    if MASK_N:
        logits = tl.where(valid_n[None, :], logits, float("-inf"))
    # Every tile holds at least one valid entry, so m_new is finite.
    m_new = tl.maximum(m_i, tl.max(logits, axis=1))
    alpha = tl.exp2(m_i - m_new)
    weights = tl.exp2(logits - m_new[:, None])
    l_i = l_i * alpha + tl.sum(weights, axis=1)
    acc = acc * alpha[:, None]
    # The weights are the left operand, so on Hopper they feed the tensor cores from registers.
    # Half inputs: weights in the values' precision, products accumulated in float32.
    return m_new, l_i, dot_f32(weights.to(v.dtype), v, acc, IEEE_DOT, UPCAST_DOT)


@triton.jit
def memory_read_kernel(
    mem_key,  # (B, Ck, N)
    mem_val,  # (B, Cv, N)
    q_key,  # (B, Ck, P)
    q_val,  # (B, Cv, P)
    n_valid,  # (B,) int32/int64, read only when HAS_N_VALID
    out,  # (B, 2Cv, P)
    part_acc,  # (NUM_SPLITS, B, Cv, P) float32, used when NUM_SPLITS > 1
    part_ml,  # (NUM_SPLITS, 2, B, P) float32 running max and normaliser, likewise
    num_items,
    num_entries,
    num_pixels,
    key_dim,
    value_dim,
    stride_kb,
    stride_kc,
    stride_kn,
    stride_vb,
    stride_vc,
    stride_vn,
    stride_qb,
    stride_qc,
    stride_qp,
    stride_qvb,
    stride_qvc,
    stride_qvp,
    stride_ob,
    stride_oc,
    stride_op,
    qk_scale,  # log2(e) / sqrt(Ck)
    HAS_N_VALID: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    IEEE_DOT: tl.constexpr,  # float32 inputs: exact fp32 products, not TF32
    UPCAST_DOT: tl.constexpr,  # interpreter only: it keeps bfloat16 as raw bits that tl.dot misreads
    MASK_C: tl.constexpr,  # key_dim % CHUNK_CK != 0
    MASK_V: tl.constexpr,  # value_dim % BLOCK_V != 0
    CHUNKS: tl.constexpr,  # key channels taken CHUNK_CK at a time (see key_tiles)
    CHUNK_CK: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_bv = tl.program_id(1)
    split = tl.program_id(2)
    value_blocks = tl.cdiv(value_dim, BLOCK_V)
    item = pid_bv // value_blocks
    value_block = pid_bv % value_blocks

    offs_c = tl.arange(0, CHUNK_CK)
    offs_v = value_block * BLOCK_V + tl.arange(0, BLOCK_V)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_v = offs_v < value_dim
    mask_p = offs_p < num_pixels

    q_ptrs = q_key + item * stride_qb + offs_p[:, None] * stride_qp + offs_c[None, :] * stride_qc
    if CHUNKS == 1:
        # The query tile (BLOCK_P, Ck) stays in registers for the whole sweep over the memory.
        q = tl.load(q_ptrs, mask=mask_p[:, None] & (offs_c < key_dim)[None, :], other=0.0)
    else:
        q = 0.0  # unused: key_products reads the query chunk by chunk

    end = num_entries
    if HAS_N_VALID:
        end = tl.minimum(tl.maximum(tl.load(n_valid + item).to(tl.int32), 0), num_entries)
    # The valid entries are shared out on the device (no host sync), BLOCK_N-aligned; with few
    # valid entries the last splits get none and only write an empty state.
    chunk = tl.cdiv(tl.cdiv(end, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * chunk
    stop = tl.minimum(start + chunk, end)
    # Whole tiles first, unmasked; only the tile holding the valid length is masked.
    full_stop = start + tl.maximum(stop - start, 0) // BLOCK_N * BLOCK_N

    m_i = tl.full([BLOCK_P], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_P], dtype=tl.float32)
    acc = tl.zeros([BLOCK_P, BLOCK_V], dtype=tl.float32)
    key_ptrs = mem_key + item * stride_kb + offs_c[:, None] * stride_kc
    val_base = mem_val + item * stride_vb + offs_v[None, :] * stride_vc
    for n0 in range(start, full_stop, BLOCK_N):
        m_i, l_i, acc = _attend_tile(
            q,
            q_ptrs,
            mask_p,
            m_i,
            l_i,
            acc,
            key_ptrs,
            val_base,
            n0,
            start,
            stop,
            key_dim,
            mask_v,
            qk_scale,
            stride_qc,
            stride_kc,
            stride_kn,
            stride_vn,
            False,
            MASK_C,
            MASK_V,
            IEEE_DOT,
            UPCAST_DOT,
            CHUNKS,
            CHUNK_CK,
            BLOCK_P,
            BLOCK_N,
        )
    if full_stop < stop:
        m_i, l_i, acc = _attend_tile(
            q,
            q_ptrs,
            mask_p,
            m_i,
            l_i,
            acc,
            key_ptrs,
            val_base,
            full_stop,
            start,
            stop,
            key_dim,
            mask_v,
            qk_scale,
            stride_qc,
            stride_kc,
            stride_kn,
            stride_vn,
            True,
            MASK_C,
            MASK_V,
            IEEE_DOT,
            UPCAST_DOT,
            CHUNKS,
            CHUNK_CK,
            BLOCK_P,
            BLOCK_N,
        )

    mask_pv = mask_p[:, None] & mask_v[None, :]
    if NUM_SPLITS == 1:
        # An empty memory (l = 0) reads zeros.
        inv_l = tl.where(l_i > 0.0, 1.0 / tl.where(l_i > 0.0, l_i, 1.0), 0.0)
        read = acc * inv_l[:, None]
        tl.store(
            out + item * stride_ob + offs_v[None, :] * stride_oc + offs_p[:, None] * stride_op,
            read.to(out.dtype.element_ty),
            mask=mask_pv,
        )
    else:
        part = (split * num_items + item) * value_dim
        tl.store(part_acc + (part + offs_v[None, :]) * num_pixels + offs_p[:, None], acc, mask=mask_pv)
        if value_block == 0:
            row = (split * 2 * num_items + item) * num_pixels
            tl.store(part_ml + row + offs_p, m_i, mask=mask_p)
            tl.store(part_ml + row + num_items * num_pixels + offs_p, l_i, mask=mask_p)

    if split == 0:
        # The second half of the output is the query values: copied here, no torch.cat.
        mask_vp = mask_v[:, None] & mask_p[None, :]
        qv = tl.load(
            q_val + item * stride_qvb + offs_v[:, None] * stride_qvc + offs_p[None, :] * stride_qvp,
            mask=mask_vp,
        )
        tl.store(
            out + item * stride_ob + (value_dim + offs_v[:, None]) * stride_oc + offs_p[None, :] * stride_op,
            qv.to(out.dtype.element_ty),
            mask=mask_vp,
        )


@triton.jit
def memory_read_combine_kernel(
    part_acc,  # (num_splits, B, Cv, P) float32
    part_ml,  # (num_splits, 2, B, P) float32
    out,  # (B, 2Cv, P)
    num_splits,
    num_items,
    num_pixels,
    value_dim,
    stride_ob,
    stride_oc,
    stride_op,
    BLOCK_V: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """Merge the splits' partial softmax states: rescale each to the common maximum and add."""
    pid_p = tl.program_id(0)
    pid_bv = tl.program_id(1)
    value_blocks = tl.cdiv(value_dim, BLOCK_V)
    item = pid_bv // value_blocks
    value_block = pid_bv % value_blocks
    offs_v = value_block * BLOCK_V + tl.arange(0, BLOCK_V)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < num_pixels
    mask_vp = (offs_v < value_dim)[:, None] & mask_p[None, :]

    m_all = tl.full([BLOCK_P], float("-inf"), dtype=tl.float32)
    for split in range(num_splits):
        row = (split * 2 * num_items + item) * num_pixels
        m_all = tl.maximum(m_all, tl.load(part_ml + row + offs_p, mask=mask_p, other=float("-inf")))
    # Splits that saw no valid entry have m = -inf: shifting by 0 when all did avoids -inf - -inf.
    m_all = tl.where(m_all == float("-inf"), 0.0, m_all)
    l_all = tl.zeros([BLOCK_P], dtype=tl.float32)
    acc = tl.zeros([BLOCK_V, BLOCK_P], dtype=tl.float32)
    for split in range(num_splits):
        row = (split * 2 * num_items + item) * num_pixels
        m_s = tl.load(part_ml + row + offs_p, mask=mask_p, other=float("-inf"))
        l_s = tl.load(part_ml + row + num_items * num_pixels + offs_p, mask=mask_p, other=0.0)
        scale = tl.exp2(m_s - m_all)  # 0 for an empty split
        l_all += l_s * scale
        part = (split * num_items + item) * value_dim
        a_s = tl.load(part_acc + (part + offs_v[:, None]) * num_pixels + offs_p[None, :], mask=mask_vp, other=0.0)
        acc += a_s * scale[None, :]
    inv_l = tl.where(l_all > 0.0, 1.0 / tl.where(l_all > 0.0, l_all, 1.0), 0.0)
    tl.store(
        out + item * stride_ob + offs_v[:, None] * stride_oc + offs_p[None, :] * stride_op,
        (acc * inv_l[None, :]).to(out.dtype.element_ty),
        mask=mask_vp,
    )
