"""Top-k memory read: the softmax over each query's ``top_k`` largest logits, never the P x N matrix.

Two kernels, launched back to back:

1. :func:`topk_sweep_kernel` (grid: pixel tiles x items x memory splits) streams its split of the
   memory in BLOCK_N-entry tiles (logits from :mod:`family_logits`) and keeps, per query pixel,
   a running list of its ``top_k`` best (logit, entry) pairs, which it writes to a workspace.
2. :func:`topk_readout_kernel` (grid: pixel tiles x items) merges the splits' lists, takes the
   softmax over each query's final ``top_k`` logits, gathers the ``top_k`` chosen value columns
   (``top_k`` x Cv multiply-adds a query instead of N x Cv), writes the readout (and the query
   values after it), and adds each weight to its entry's usage with an atomic add.

A (logit, entry) pair is one int64, the logit's float bits mapped to a signed integer of the
same order in the high half and the entry in the low half: one integer comparison orders pairs
by logit (ties by entry), one max-reduction is an argmax, and equal keys are the same entry.

The running list of a query is a row of KPAD (the power of two >= top_k) slots: the first top_k
are live, the others hold INT64_MAX and never leave the list's minimum. Empty live slots hold
distinct sentinels below any logit (INT64_MIN + slot), so that "the slot holding the list's
minimum" is always one slot. A memory tile is merged in by repeated insertion: while some row's
best remaining candidate beats its list's minimum, every such row swaps the two (one max and one
min reduction a round). After the first tiles a row's threshold, its k-th best logit, is high and
a tile brings each row about top_k / t new entries at the t-th tile, so most rounds are few;
a tile whose candidates all fall below their rows' thresholds costs one comparison.
(Sorting each tile and merging bitonically costs two sorts a tile whatever the data, and
``tl.sort`` runs for seconds under the interpreter.)

Splits are shared out on the device from the valid length as in :mod:`memory_read`; each split's
list holds its own top_k, so their union holds the global top_k, which the readout's merge
(the same insertion, one split's list after another) finds.
"""

import triton
import triton.language as tl

from .family_logits import family_logits, query_offset, query_operands

#: Sentinels of the packed keys: below / above every (logit, entry) pair.
INT64_MIN = tl.constexpr(-(2**63))
INT64_MAX = tl.constexpr(2**63 - 1)
#: Every real pair's key is at least this (only a logit that is a NaN with the sign bit set maps
#: lower, and is then dropped as an empty slot would be).
REAL_KEY_FLOOR = tl.constexpr(-(2**63) + 2**32)


@triton.jit
def pack_keys(logits, entries):
    """(logit, entry) pairs as int64 keys in the same order as (logit, entry)."""
    bits = logits.to(tl.int32, bitcast=True)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: magnitude bits flipped
    return (ordered.to(tl.int64) << 32) | entries.to(tl.int64)


@triton.jit
def unpack_logits(keys):
    """The float32 logits of packed keys (sentinels come out as NaN or huge values: mask them)."""
    ordered = (keys >> 32).to(tl.int32)
    return (ordered ^ ((ordered >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)


@triton.jit
def insert_candidates(best, candidates):
    """Merge ``candidates`` (BLOCK_P, BLOCK_N) int64 keys into the lists ``best`` (BLOCK_P, KPAD).

    Candidates that are not real pairs must hold INT64_MIN. Each round, every row whose largest
    candidate beats its list's minimum replaces that minimum with it.
    """
    row_min = tl.min(best, axis=1)
    top = tl.max(candidates, axis=1)
    while tl.max((top > row_min).to(tl.int32), axis=0) > 0:
        take = top > row_min
        best = tl.where((best == row_min[:, None]) & take[:, None], top[:, None], best)
        candidates = tl.where((candidates == top[:, None]) & take[:, None], INT64_MIN, candidates)
        row_min = tl.min(best, axis=1)
        top = tl.max(candidates, axis=1)
    return best


@triton.jit
def empty_lists(top_k, KPAD: tl.constexpr, BLOCK_P: tl.constexpr):
    """Lists (BLOCK_P, KPAD) with top_k live empty slots (distinct sentinels) and dead ones."""
    slot = tl.arange(0, KPAD)
    row = tl.where(slot < top_k, INT64_MIN + slot.to(tl.int64), INT64_MAX)
    return tl.zeros([BLOCK_P, KPAD], dtype=tl.int64) + row[None, :]


@triton.jit
def _sweep_tile(
    best,
    qa,
    qa_low,
    qb,
    q_offset,
    q_ptrs,
    e_ptrs,
    mask_p,
    key_base,
    shrinkage,
    n0,
    lo,
    hi,
    key_dim,
    stride_qc,
    stride_ec,
    stride_kc,
    stride_kn,
    stride_sn,
    scale,
    L2: tl.constexpr,
    SELECTION: tl.constexpr,
    SHRINKAGE: tl.constexpr,
    MASK_N: tl.constexpr,
    MASK_C: tl.constexpr,
    IEEE_DOT: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
    CHUNKS: tl.constexpr,
    CHUNK_CK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """The lists with memory entries n0 .. n0 + BLOCK_N merged in."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    valid_n = (offs_n >= lo) & (offs_n < hi)
    shrink = 0.0
    if SHRINKAGE:
        if MASK_N:
            shrink = tl.load(shrinkage + offs_n * stride_sn, mask=valid_n, other=0.0).to(tl.float32)
        else:
            shrink = tl.load(shrinkage + offs_n * stride_sn).to(tl.float32)
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
        SELECTION and not IEEE_DOT,
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
    keys = pack_keys(logits, offs_n[None, :] + tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.int32))
    if MASK_N:
        keys = tl.where(valid_n[None, :], keys, INT64_MIN)
    return insert_candidates(best, keys)


@triton.jit
def topk_sweep_kernel(
    mem_key,  # (B, Ck, N)
    q_key,  # (B, Ck, P)
    selection,  # (B, Ck, P), read when SELECTION
    shrinkage,  # (B, N), read when SHRINKAGE
    n_valid,  # (B,) int32/int64, read when HAS_N_VALID
    lists,  # (NUM_SPLITS, B, P, KPAD) int64 output: each split's packed top-k per query
    num_items,
    num_entries,
    num_pixels,
    key_dim,
    top_k,
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
    scale,  # the logit scale times log2(e)
    L2: tl.constexpr,
    SELECTION: tl.constexpr,
    SHRINKAGE: tl.constexpr,
    HAS_N_VALID: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    IEEE_DOT: tl.constexpr,  # float32 inputs: exact float32 products
    UPCAST_DOT: tl.constexpr,  # interpreter only: it keeps bfloat16 as raw bits that tl.dot misreads
    MASK_C: tl.constexpr,  # key_dim % CHUNK_CK != 0
    CHUNKS: tl.constexpr,  # key channels taken CHUNK_CK at a time (see key_tiles)
    CHUNK_CK: tl.constexpr,
    KPAD: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid_p = tl.program_id(0)
    item = tl.program_id(1)
    split = tl.program_id(2)
    offs_c = tl.arange(0, CHUNK_CK)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < num_pixels

    q_ptrs = q_key + item * stride_qb + offs_p[:, None] * stride_qp + offs_c[None, :] * stride_qc
    e_ptrs = selection + item * stride_eb + offs_p[:, None] * stride_ep + offs_c[None, :] * stride_ec
    q_offset = 0.0
    if SELECTION:
        q_offset = query_offset(q_ptrs, e_ptrs, mask_p, key_dim, stride_qc, stride_ec, CHUNKS, CHUNK_CK, BLOCK_P)
    if CHUNKS == 1:
        # The query operands (BLOCK_P, Ck) stay in registers for the whole sweep.
        qa, qa_low, qb = query_operands(
            q_ptrs,
            e_ptrs,
            0,
            mask_p,
            key_dim,
            stride_qc,
            stride_ec,
            L2,
            SELECTION,
            SELECTION and not IEEE_DOT,
            CHUNK_CK,
        )
    else:
        qa = 0.0  # unused: family_logits builds them chunk by chunk
        qa_low = 0.0
        qb = 0.0

    end = num_entries
    if HAS_N_VALID:
        end = tl.minimum(tl.maximum(tl.load(n_valid + item).to(tl.int32), 0), num_entries)
    chunk = tl.cdiv(tl.cdiv(end, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * chunk
    stop = tl.minimum(start + chunk, end)
    full_stop = start + tl.maximum(stop - start, 0) // BLOCK_N * BLOCK_N

    best = empty_lists(top_k, KPAD, BLOCK_P)
    key_base = mem_key + item * stride_kb + offs_c[:, None] * stride_kc
    shrink_base = shrinkage + item * stride_sb
    for n0 in range(start, full_stop, BLOCK_N):
        best = _sweep_tile(
            best,
            qa,
            qa_low,
            qb,
            q_offset,
            q_ptrs,
            e_ptrs,
            mask_p,
            key_base,
            shrink_base,
            n0,
            start,
            stop,
            key_dim,
            stride_qc,
            stride_ec,
            stride_kc,
            stride_kn,
            stride_sn,
            scale,
            L2,
            SELECTION,
            SHRINKAGE,
            False,
            MASK_C,
            IEEE_DOT,
            UPCAST_DOT,
            CHUNKS,
            CHUNK_CK,
            BLOCK_P,
            BLOCK_N,
        )
    if full_stop < stop:
        best = _sweep_tile(
            best,
            qa,
            qa_low,
            qb,
            q_offset,
            q_ptrs,
            e_ptrs,
            mask_p,
            key_base,
            shrink_base,
            full_stop,
            start,
            stop,
            key_dim,
            stride_qc,
            stride_ec,
            stride_kc,
            stride_kn,
            stride_sn,
            scale,
            L2,
            SELECTION,
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
    slot = tl.arange(0, KPAD)
    row = (split * num_items + item) * num_pixels + offs_p
    tl.store(lists + row[:, None] * KPAD + slot[None, :], best, mask=mask_p[:, None])


@triton.jit
def topk_readout_kernel(
    lists,  # (num_splits, B, P, KPAD) int64 from topk_sweep_kernel
    mem_val,  # (B, Cv, N)
    q_val,  # (B, Cv, P), read when HAS_Q_VAL
    out,  # (B, Cv or 2Cv, P)
    usage,  # (B, N) float32, zeroed by the launcher, added to when HAS_USAGE
    num_splits,
    list_items,  # items of the lists: B, or 1 when every item shares them
    num_pixels,
    value_dim,
    top_k,
    stride_vb,
    stride_vc,
    stride_vn,
    stride_qvb,
    stride_qvc,
    stride_qvp,
    stride_ob,
    stride_oc,
    stride_op,
    stride_ub,
    HAS_Q_VAL: tl.constexpr,
    HAS_USAGE: tl.constexpr,
    KPAD: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid_p = tl.program_id(0)
    item = tl.program_id(1)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < num_pixels
    slot = tl.arange(0, KPAD)

    # Merge the splits' lists: split 0's is the start, the others' live pairs are candidates.
    list_item = item % list_items
    best = tl.load(
        lists + (list_item * num_pixels + offs_p)[:, None] * KPAD + slot[None, :], mask=mask_p[:, None], other=INT64_MIN
    )
    for split in range(1, num_splits):
        row = (split * list_items + list_item) * num_pixels + offs_p
        other = tl.load(lists + row[:, None] * KPAD + slot[None, :], mask=mask_p[:, None], other=INT64_MIN)
        real = (other >= REAL_KEY_FLOOR) & (slot < top_k)[None, :]
        best = insert_candidates(best, tl.where(real, other, INT64_MIN))

    # Softmax over the live slots that hold a pair (fewer than top_k valid entries leave some empty).
    chosen = (best >= REAL_KEY_FLOOR) & (slot < top_k)[None, :] & mask_p[:, None]
    logits = tl.where(chosen, unpack_logits(best), float("-inf"))
    row_max = tl.max(logits, axis=1)
    row_max = tl.where(row_max == float("-inf"), 0.0, row_max)  # a query with no entry: weights 0
    weights = tl.where(chosen, tl.exp2(logits - row_max[:, None]), 0.0)
    total = tl.sum(weights, axis=1)
    weights = weights * tl.where(total > 0.0, 1.0 / tl.where(total > 0.0, total, 1.0), 0.0)[:, None]
    entries = tl.where(chosen, best.to(tl.int32), 0)  # the low half

    if HAS_USAGE:
        tl.atomic_add(usage + item * stride_ub + entries, weights, mask=chosen)

    # Gather: out[c, p] = sum_j w[p, j] V[c, entry[p, j]], BLOCK_V channels at a time.
    val_base = mem_val + item * stride_vb + entries[:, :, None] * stride_vn  # (BLOCK_P, KPAD, 1)
    out_base = out + item * stride_ob + offs_p[:, None] * stride_op
    offs_v0 = tl.arange(0, BLOCK_V)
    for v0 in range(0, value_dim, BLOCK_V):
        offs_v = v0 + offs_v0
        mask_v = offs_v < value_dim
        v = tl.load(
            val_base + offs_v[None, None, :] * stride_vc, mask=chosen[:, :, None] & mask_v[None, None, :], other=0.0
        )
        read = tl.sum(v.to(tl.float32) * weights[:, :, None], axis=1)  # (BLOCK_P, BLOCK_V)
        tl.store(
            out_base + offs_v[None, :] * stride_oc,
            read.to(out.dtype.element_ty),
            mask=mask_p[:, None] & mask_v[None, :],
        )
        if HAS_Q_VAL:
            qv = tl.load(
                q_val + item * stride_qvb + offs_v[None, :] * stride_qvc + offs_p[:, None] * stride_qvp,
                mask=mask_p[:, None] & mask_v[None, :],
            )
            tl.store(
                out_base + (value_dim + offs_v[None, :]) * stride_oc,
                qv.to(out.dtype.element_ty),
                mask=mask_p[:, None] & mask_v[None, :],
            )
