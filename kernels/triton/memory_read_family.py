"""Full-softmax read with the STM family's logits (l2 affinity, selection, shrinkage, any scale),
and the entries' usage.

:func:`family_read_kernel` is :func:`memory_read.memory_read_kernel`'s online softmax (same grid:
pixel tiles x items x value blocks, memory splits; the same partial layout, merged by
:func:`memory_read.memory_read_combine_kernel`) with the logits of :mod:`family_logits` and an
optional query-value half: without ``q_val`` the output is the readout alone.

Usage, the total weight each entry receives over the queries, needs each query's final softmax
maximum and normaliser, which exist only after the whole sweep. :func:`family_usage_kernel`
(grid: entry tiles x items) therefore recomputes the logits of its entries against every query
tile, given those statistics (written by the sweep), and sums ``exp2(logit - max) / sum`` over the
queries: one more pass of the logits' arithmetic, no atomics, each entry written once. It runs
only when usage is asked for.
"""

import triton
import triton.language as tl

from .family_logits import family_logits, query_offset, query_operands
from .key_tiles import dot_f32


@triton.jit
def _family_tile(
    qa,
    qa_low,
    qb,
    q_offset,
    q_ptrs,
    e_ptrs,
    mask_p,
    m_i,
    l_i,
    acc,
    key_base,
    val_base,
    shrink_base,
    n0,
    lo,
    hi,
    key_dim,
    mask_v,
    scale,
    stride_qc,
    stride_ec,
    stride_kc,
    stride_kn,
    stride_vn,
    stride_sn,
    L2: tl.constexpr,
    SELECTION: tl.constexpr,
    SHRINKAGE: tl.constexpr,
    MASK_N: tl.constexpr,
    MASK_C: tl.constexpr,
    MASK_V: tl.constexpr,
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
    shrink = 0.0
    if SHRINKAGE:
        if MASK_N:
            shrink = tl.load(shrink_base + offs_n * stride_sn, mask=valid_n, other=0.0).to(tl.float32)
        else:
            shrink = tl.load(shrink_base + offs_n * stride_sn).to(tl.float32)
    logits = family_logits(
        qa,
        qa_low,
        qb,
        q_offset,
        q_ptrs,
        e_ptrs,
        mask_p,
        key_base + offs_n[None, :] * stride_kn,
        valid_n,
        shrink,
        key_dim,
        stride_qc,
        stride_ec,
        stride_kc,
        scale,
        L2,
        SELECTION,
        False,
        SHRINKAGE,
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
        logits = tl.where(valid_n[None, :], logits, float("-inf"))
    elif MASK_V:
        v = tl.load(v_ptrs, mask=mask_v[None, :], other=0.0)
    else:
        v = tl.load(v_ptrs)
    # Every tile holds at least one valid entry, so m_new is finite.
    m_new = tl.maximum(m_i, tl.max(logits, axis=1))
    alpha = tl.exp2(m_i - m_new)
    weights = tl.exp2(logits - m_new[:, None])
    l_i = l_i * alpha + tl.sum(weights, axis=1)
    acc = acc * alpha[:, None]
    return m_new, l_i, dot_f32(weights.to(v.dtype), v, acc, IEEE_DOT, UPCAST_DOT)


@triton.jit
def _split_range(
    n_valid, item, num_entries, split, HAS_N_VALID: tl.constexpr, NUM_SPLITS: tl.constexpr, BLOCK_N: tl.constexpr
):
    """(start, stop, full_stop) of this split's entries, shared out on the device, BLOCK_N-aligned."""
    end = num_entries
    if HAS_N_VALID:
        end = tl.minimum(tl.maximum(tl.load(n_valid + item).to(tl.int32), 0), num_entries)
    chunk = tl.cdiv(tl.cdiv(end, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * chunk
    stop = tl.minimum(start + chunk, end)
    return start, stop, start + tl.maximum(stop - start, 0) // BLOCK_N * BLOCK_N


@triton.jit
def family_read_kernel(
    mem_key,  # (B, Ck, N)
    mem_val,  # (B, Cv, N)
    q_key,  # (B, Ck, P)
    q_val,  # (B, Cv, P), read when HAS_Q_VAL
    selection,  # (B, Ck, P), read when SELECTION
    shrinkage,  # (B, N), read when SHRINKAGE
    n_valid,  # (B,) int32/int64, read when HAS_N_VALID
    out,  # (B, Cv or 2Cv, P)
    part_acc,  # (NUM_SPLITS, B, Cv, P) float32, when NUM_SPLITS > 1
    part_ml,  # (NUM_SPLITS, 2, B, P) float32 running max and normaliser, when NUM_SPLITS > 1 or WRITE_STATS
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
    stride_eb,
    stride_ec,
    stride_ep,
    stride_sb,
    stride_sn,
    stride_ob,
    stride_oc,
    stride_op,
    scale,  # the logit scale times log2(e)
    L2: tl.constexpr,
    SELECTION: tl.constexpr,
    SHRINKAGE: tl.constexpr,
    HAS_Q_VAL: tl.constexpr,
    HAS_N_VALID: tl.constexpr,
    WRITE_STATS: tl.constexpr,  # the usage kernel needs (max, sum) even with one split
    NUM_SPLITS: tl.constexpr,
    IEEE_DOT: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
    MASK_C: tl.constexpr,
    MASK_V: tl.constexpr,
    CHUNKS: tl.constexpr,
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
    e_ptrs = selection + item * stride_eb + offs_p[:, None] * stride_ep + offs_c[None, :] * stride_ec
    q_offset = 0.0
    if SELECTION:
        q_offset = query_offset(q_ptrs, e_ptrs, mask_p, key_dim, stride_qc, stride_ec, CHUNKS, CHUNK_CK, BLOCK_P)
    if CHUNKS == 1:
        qa, qa_low, qb = query_operands(
            q_ptrs, e_ptrs, 0, mask_p, key_dim, stride_qc, stride_ec, L2, SELECTION, False, CHUNK_CK
        )
    else:
        qa = 0.0
        qa_low = 0.0
        qb = 0.0

    start, stop, full_stop = _split_range(n_valid, item, num_entries, split, HAS_N_VALID, NUM_SPLITS, BLOCK_N)
    m_i = tl.full([BLOCK_P], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_P], dtype=tl.float32)
    acc = tl.zeros([BLOCK_P, BLOCK_V], dtype=tl.float32)
    key_base = mem_key + item * stride_kb + offs_c[:, None] * stride_kc
    val_base = mem_val + item * stride_vb + offs_v[None, :] * stride_vc
    shrink_base = shrinkage + item * stride_sb
    for n0 in range(start, full_stop, BLOCK_N):
        m_i, l_i, acc = _family_tile(
            qa,
            qa_low,
            qb,
            q_offset,
            q_ptrs,
            e_ptrs,
            mask_p,
            m_i,
            l_i,
            acc,
            key_base,
            val_base,
            shrink_base,
            n0,
            start,
            stop,
            key_dim,
            mask_v,
            scale,
            stride_qc,
            stride_ec,
            stride_kc,
            stride_kn,
            stride_vn,
            stride_sn,
            L2,
            SELECTION,
            SHRINKAGE,
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
        m_i, l_i, acc = _family_tile(
            qa,
            qa_low,
            qb,
            q_offset,
            q_ptrs,
            e_ptrs,
            mask_p,
            m_i,
            l_i,
            acc,
            key_base,
            val_base,
            shrink_base,
            full_stop,
            start,
            stop,
            key_dim,
            mask_v,
            scale,
            stride_qc,
            stride_ec,
            stride_kc,
            stride_kn,
            stride_vn,
            stride_sn,
            L2,
            SELECTION,
            SHRINKAGE,
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
        inv_l = tl.where(l_i > 0.0, 1.0 / tl.where(l_i > 0.0, l_i, 1.0), 0.0)  # an empty memory reads zeros
        tl.store(
            out + item * stride_ob + offs_v[None, :] * stride_oc + offs_p[:, None] * stride_op,
            (acc * inv_l[:, None]).to(out.dtype.element_ty),
            mask=mask_pv,
        )
    else:
        part = (split * num_items + item) * value_dim
        tl.store(part_acc + (part + offs_v[None, :]) * num_pixels + offs_p[:, None], acc, mask=mask_pv)
    if (NUM_SPLITS > 1 or WRITE_STATS) and value_block == 0:
        row = (split * 2 * num_items + item) * num_pixels
        tl.store(part_ml + row + offs_p, m_i, mask=mask_p)
        tl.store(part_ml + row + num_items * num_pixels + offs_p, l_i, mask=mask_p)

    if HAS_Q_VAL and split == 0:
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
def family_usage_kernel(
    mem_key,  # (B, Ck, N)
    q_key,  # (B, Ck, P)
    selection,  # (B, Ck, P), read when SELECTION
    shrinkage,  # (B, N), read when SHRINKAGE
    n_valid,  # (B,) int32/int64, read when HAS_N_VALID
    part_ml,  # (num_splits, 2, B, P) float32 from family_read_kernel
    usage,  # (B, N) float32 output
    num_splits,
    num_items,
    num_entries,
    num_pixels,
    key_dim,
    stride_kb,
    stride_kc,
    stride_kn,
    stride_qb,
    stride_qc,
    stride_qp,
    stride_eb,
    stride_ec,
    stride_ep,
    stride_sb,
    stride_sn,
    stride_ub,
    scale,
    L2: tl.constexpr,
    SELECTION: tl.constexpr,
    SHRINKAGE: tl.constexpr,
    HAS_N_VALID: tl.constexpr,
    IEEE_DOT: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
    MASK_C: tl.constexpr,
    CHUNKS: tl.constexpr,
    CHUNK_CK: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """usage[b, n] = sum_p exp2(logit - max_p) / sum_p over the entries n0 .. n0 + BLOCK_N."""
    pid_n = tl.program_id(0)
    item = tl.program_id(1)
    offs_c = tl.arange(0, CHUNK_CK)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    end = num_entries
    if HAS_N_VALID:
        end = tl.minimum(tl.maximum(tl.load(n_valid + item).to(tl.int32), 0), num_entries)
    valid_n = offs_n < end
    key_ptrs = mem_key + item * stride_kb + offs_c[:, None] * stride_kc + offs_n[None, :] * stride_kn
    shrink = 0.0
    if SHRINKAGE:
        shrink = tl.load(shrinkage + item * stride_sb + offs_n * stride_sn, mask=valid_n, other=0.0).to(tl.float32)

    total = tl.zeros([BLOCK_N], dtype=tl.float32)
    if pid_n * BLOCK_N < end:
        for p0 in range(0, num_pixels, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            mask_p = offs_p < num_pixels
            # The query's softmax statistics over all splits, as the combine merges them.
            m_all = tl.full([BLOCK_P], float("-inf"), dtype=tl.float32)
            for split in range(num_splits):
                row = (split * 2 * num_items + item) * num_pixels
                m_all = tl.maximum(m_all, tl.load(part_ml + row + offs_p, mask=mask_p, other=float("-inf")))
            m_all = tl.where(m_all == float("-inf"), 0.0, m_all)
            l_all = tl.zeros([BLOCK_P], dtype=tl.float32)
            for split in range(num_splits):
                row = (split * 2 * num_items + item) * num_pixels
                m_s = tl.load(part_ml + row + offs_p, mask=mask_p, other=float("-inf"))
                l_s = tl.load(part_ml + row + num_items * num_pixels + offs_p, mask=mask_p, other=0.0)
                l_all += l_s * tl.exp2(m_s - m_all)
            inv_l = tl.where(l_all > 0.0, 1.0 / tl.where(l_all > 0.0, l_all, 1.0), 0.0)

            q_ptrs = q_key + item * stride_qb + offs_p[:, None] * stride_qp + offs_c[None, :] * stride_qc
            e_ptrs = selection + item * stride_eb + offs_p[:, None] * stride_ep + offs_c[None, :] * stride_ec
            q_offset = 0.0
            if SELECTION:
                q_offset = query_offset(
                    q_ptrs, e_ptrs, mask_p, key_dim, stride_qc, stride_ec, CHUNKS, CHUNK_CK, BLOCK_P
                )
            if CHUNKS == 1:
                qa, qa_low, qb = query_operands(
                    q_ptrs, e_ptrs, 0, mask_p, key_dim, stride_qc, stride_ec, L2, SELECTION, False, CHUNK_CK
                )
            else:
                qa = 0.0
                qa_low = 0.0
                qb = 0.0
            logits = family_logits(
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
                L2,
                SELECTION,
                False,
                SHRINKAGE,
                True,
                MASK_C,
                IEEE_DOT,
                UPCAST_DOT,
                CHUNKS,
                CHUNK_CK,
                BLOCK_P,
                BLOCK_N,
            )
            weights = tl.exp2(logits - m_all[:, None]) * inv_l[:, None]
            weights = tl.where(mask_p[:, None] & valid_n[None, :], weights, 0.0)
            total += tl.sum(weights, axis=0)
    tl.store(usage + item * stride_ub + offs_n, total, mask=offs_n < num_entries)
