"""Memory update: append each item's most novel new pixels to its memory, without a host sync.

Three kernels, launched back to back on one stream:

1. :func:`best_match_kernel` (grid: pixel tiles x items x memory splits): each new pixel's
   highest cosine similarity to the valid memory keys. A narrow matrix product of raw keys
   (Ck = 32 for SwiftNet) whose epilogue scales each row by its memory key's inverse norm (computed
   on the fly from the tile already in registers: Ck flops an entry against Ck x BLOCK_P for the
   product, so no stored norms are needed) and keeps the running row maximum; the new keys'
   inverse norms scale the final maximum. Each memory split writes P floats per item, never the
   P x N similarity matrix.
2. :func:`select_novel_kernel` (grid: items): the k lowest similarities, ties to the lower pixel
   index, in one block (P = 1620 fits in 2048): the similarities' float bits, mapped to ordered
   integers, are bisected for the k-th smallest value (33 block reductions), then the ties at it
   are taken by pixel index with a prefix sum. (Sorting packed (bits, index) int64 with tl.sort
   does the same but runs for seconds under the interpreter.) Each chosen pixel's destination
   column is ``n_valid + (its rank in pixel order)``; the kernel writes those columns (-1 for
   pixels left out or past the capacity) and advances n_valid.
3. :func:`append_kernel` (grid: pixel tiles x items): copies the chosen pixels' keys and values to
   their columns.

The valid length is read from and written to device memory, so the whole update can be captured
in a CUDA graph.
"""

import triton
import triton.language as tl

from .key_tiles import key_products, load_query_chunk


@triton.jit
def _match_tile(
    q,
    q_ptrs,
    mask_p,
    best_raw,
    key_ptrs,
    n0,
    lo,
    hi,
    key_dim,
    stride_qc,
    stride_kc,
    stride_kn,
    MASK_N: tl.constexpr,  # a tile with entries outside [lo, hi)
    MASK_C: tl.constexpr,  # key channels not a multiple of CHUNK_CK
    IEEE_DOT: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
    CHUNKS: tl.constexpr,
    CHUNK_CK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Running maximum (BLOCK_P,) of the raw cosine numerators over entries n0 .. n0 + BLOCK_N."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    valid_n = (offs_n >= lo) & (offs_n < hi)
    # Half inputs: products of two halves are exact in float32, so the dot of raw keys with
    # float32 accumulation is as accurate as normalising first, and runs on tensor cores.
    dots, k_norm2 = key_products(
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
    k_inv = 1.0 / tl.maximum(tl.sqrt(k_norm2), 1e-12)
    cosine = dots * k_inv[None, :]  # (BLOCK_P, BLOCK_N)
    if MASK_N:
        cosine = tl.where(valid_n[None, :], cosine, float("-inf"))
    return tl.maximum(best_raw, tl.max(cosine, axis=1))


@triton.jit
def best_match_kernel(
    mem_key,  # (B, Ck, first + N): the memory is columns first .. first + N
    new_key,  # (B, Ck, P)
    n_valid,  # (B,) int32/int64, read only when HAS_N_VALID
    best,  # (NUM_SPLITS, B, P) float32 output: each split's maximum
    first,  # 0 <= first < BLOCK_N: the memory's first column (the launcher aligns mem_key down)
    num_entries,
    num_pixels,
    key_dim,
    stride_kb,
    stride_kc,
    stride_kn,
    stride_qb,
    stride_qc,
    stride_qp,
    num_items,
    HAS_N_VALID: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    IEEE_DOT: tl.constexpr,
    UPCAST_DOT: tl.constexpr,  # interpreter only: it keeps bfloat16 as raw bits that tl.dot misreads
    MASK_C: tl.constexpr,  # key_dim % CHUNK_CK != 0
    CHUNKS: tl.constexpr,  # key channels taken CHUNK_CK at a time (see key_tiles)
    CHUNK_CK: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid_p = tl.program_id(0)
    item = tl.program_id(1)
    split = tl.program_id(2)
    offs_c = tl.arange(0, CHUNK_CK)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < num_pixels

    q_ptrs = new_key + item * stride_qb + offs_p[:, None] * stride_qp + offs_c[None, :] * stride_qc
    # Inverse norms as F.normalize computes them: 1 / max(||x||, 1e-12).
    q_norm2 = tl.zeros([BLOCK_P], dtype=tl.float32)
    for c in tl.static_range(CHUNKS):
        q = load_query_chunk(q_ptrs, c, mask_p, key_dim, stride_qc, CHUNK_CK)
        q32 = q.to(tl.float32)
        q_norm2 += tl.sum(q32 * q32, axis=1)
    q_inv = 1.0 / tl.maximum(tl.sqrt(q_norm2), 1e-12)
    # With one chunk the new keys' tile (BLOCK_P, Ck) stays in registers (q); otherwise the
    # sweep reads it chunk by chunk.

    end = num_entries
    if HAS_N_VALID:
        end = tl.minimum(tl.maximum(tl.load(n_valid + item).to(tl.int32), 0), num_entries)
    hi = first + end

    # Splits of columns 0 .. hi (more programs when the pixel tiles are few), shared out on the
    # device from the valid length in BLOCK_N-aligned chunks; the selection kernel takes the
    # maximum over the splits. Only the tiles holding ``first`` or ``hi`` are masked.
    chunk = tl.cdiv(tl.cdiv(hi, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * chunk
    stop = tl.minimum(start + chunk, hi)

    best_raw = tl.full([BLOCK_P], float("-inf"), dtype=tl.float32)
    key_ptrs = mem_key + item * stride_kb + offs_c[:, None] * stride_kc
    if first > start:  # split 0's first tile starts before the memory (chunk >= BLOCK_N > first)
        best_raw = _match_tile(
            q,
            q_ptrs,
            mask_p,
            best_raw,
            key_ptrs,
            start,
            first,
            stop,
            key_dim,
            stride_qc,
            stride_kc,
            stride_kn,
            True,
            MASK_C,
            IEEE_DOT,
            UPCAST_DOT,
            CHUNKS,
            CHUNK_CK,
            BLOCK_P,
            BLOCK_N,
        )
        start += BLOCK_N
    full_stop = start + tl.maximum(stop - start, 0) // BLOCK_N * BLOCK_N
    for n0 in range(start, full_stop, BLOCK_N):
        best_raw = _match_tile(
            q,
            q_ptrs,
            mask_p,
            best_raw,
            key_ptrs,
            n0,
            first,
            stop,
            key_dim,
            stride_qc,
            stride_kc,
            stride_kn,
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
        best_raw = _match_tile(
            q,
            q_ptrs,
            mask_p,
            best_raw,
            key_ptrs,
            full_stop,
            first,
            stop,
            key_dim,
            stride_qc,
            stride_kc,
            stride_kn,
            True,
            MASK_C,
            IEEE_DOT,
            UPCAST_DOT,
            CHUNKS,
            CHUNK_CK,
            BLOCK_P,
            BLOCK_N,
        )
    # q_inv > 0, so scaling after the maximum picks the same entry. A new key holding a NaN has
    # NaN similarities, so a NaN best match as the reference's amax (maxima drop NaN: set here).
    result = tl.where(q_norm2 == q_norm2, best_raw * q_inv, float("nan"))
    tl.store(best + (split * num_items + item) * num_pixels + offs_p, result, mask=mask_p)


@triton.jit
def select_novel_kernel(
    best,  # (num_splits, B, P) float32 best-match similarities of each memory split
    n_valid,  # (B,) int32/int64: start column, advanced when HAS_N_VALID
    dest,  # (B, P) int32 output: destination column of each pixel, -1 when not appended
    num_pixels,
    count,  # pixels to append per item, 1 <= count <= P
    capacity,  # columns of the memory buffer
    start_column,  # start column when HAS_N_VALID is false
    num_splits,
    num_items,
    HAS_N_VALID: tl.constexpr,
    BLOCK: tl.constexpr,  # power of two >= P
):
    item = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    in_range = offs < num_pixels
    sim = tl.load(best + item * num_pixels + offs, mask=in_range, other=0.0)
    for split in range(1, num_splits):
        other = tl.load(best + (split * num_items + item) * num_pixels + offs, mask=in_range, other=0.0)
        sim = tl.maximum(sim, other, propagate_nan=tl.PropagateNan.ALL)
    # -0.0 and +0.0 compare equal: give them one bit pattern so that the tie goes by pixel index.
    sim = tl.where(sim == 0.0, 0.0, sim)
    # Float bits -> int32 with the float order (negative floats: flip the magnitude bits).
    bits = sim.to(tl.int32, bitcast=True)
    ordered = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    # NaN (of either sign) sorts last, after +inf, as in the reference's sort: never the most novel.
    ordered = tl.where(sim != sim, 0x7FFFFFFF, ordered).to(tl.int64)

    # The count-th smallest value t, by bisection over the int32 range: 33 halvings of a block
    # reduction, exact, and cheap both on the GPU and in the interpreter (where tl.sort is slow).
    # Invariant: #{ordered <= lo} < count <= #{ordered <= hi}.
    lo = tl.full([], -(2**31) - 1, dtype=tl.int64)
    hi = tl.full([], 2**31 - 1, dtype=tl.int64)
    for _ in range(33):
        mid = (lo + hi) >> 1
        below = tl.sum((in_range & (ordered <= mid)).to(tl.int32), axis=0)
        enough = below >= count
        hi = tl.where(enough, mid, hi)
        lo = tl.where(enough, lo, mid)
    less = in_range & (ordered < hi)
    tied = in_range & (ordered == hi)
    # All pixels below t, then the lowest-index pixels at t until count are taken.
    room = count - tl.sum(less.to(tl.int32), axis=0)
    chosen = less | (tied & (tl.cumsum(tied.to(tl.int32), axis=0) <= room))
    # Chosen pixels go in ascending pixel order: the destination is their prefix count.
    rank = tl.cumsum(chosen.to(tl.int32), axis=0) - 1

    if HAS_N_VALID:
        first = tl.minimum(tl.maximum(tl.load(n_valid + item).to(tl.int32), 0), capacity)
    else:
        first = start_column
    column = first + rank
    keep = chosen & (column < capacity)  # writes past the capacity are dropped
    tl.store(dest + item * num_pixels + offs, tl.where(keep, column, -1), mask=in_range)
    if HAS_N_VALID:
        new_length = tl.minimum(first + count, capacity)
        tl.store(n_valid + item, new_length.to(n_valid.dtype.element_ty))


@triton.jit
def append_kernel(
    dest,  # (B, P) int32 destination columns, -1 to skip
    new_key,  # (B, Ck, P)
    new_val,  # (B, Cv, P)
    key_buf,  # (B, Ck, capacity)
    val_buf,  # (B, Cv, capacity)
    num_pixels,
    key_dim,
    value_dim,
    stride_nkb,
    stride_nkc,
    stride_nkp,
    stride_nvb,
    stride_nvc,
    stride_nvp,
    stride_kb,
    stride_kc,
    stride_kn,
    stride_vb,
    stride_vc,
    stride_vn,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid_p = tl.program_id(0)
    item = tl.program_id(1)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    column = tl.load(dest + item * num_pixels + offs_p, mask=offs_p < num_pixels, other=-1)
    keep = column >= 0
    offs_c = tl.arange(0, BLOCK_C)
    # Only the chosen pixels are read (about beta of them).
    for c0 in range(0, key_dim, BLOCK_C):
        c = c0 + offs_c
        mask = (c < key_dim)[:, None] & keep[None, :]
        x = tl.load(new_key + item * stride_nkb + c[:, None] * stride_nkc + offs_p[None, :] * stride_nkp, mask=mask)
        tl.store(key_buf + item * stride_kb + c[:, None] * stride_kc + column[None, :] * stride_kn, x, mask=mask)
    for c0 in range(0, value_dim, BLOCK_C):
        c = c0 + offs_c
        mask = (c < value_dim)[:, None] & keep[None, :]
        x = tl.load(new_val + item * stride_nvb + c[:, None] * stride_nvc + offs_p[None, :] * stride_nvp, mask=mask)
        tl.store(val_buf + item * stride_vb + c[:, None] * stride_vc + column[None, :] * stride_vn, x, mask=mask)
