"""The key dot products that the memory read and the memory update share.

Both kernels compare a tile of query (or new) keys, (BLOCK_P, Ck), with a tile of memory keys,
(Ck, BLOCK_N). With 16-bit keys the product runs on the tensor cores and the whole query tile
stays in registers. With float32 keys the product must be exact (no TF32), so Triton computes it
with FMAs, and an FMA dot gives every thread whole rows of its operands: at R50's 128 key channels
that alone is more than 128 registers a thread, and the kernel spills. There the channels are
taken ``CHUNK_CK`` at a time (``CHUNKS`` > 1): the query chunk is re-read for every memory tile
(from L1; the tile is re-used by every memory tile of the sweep) and the products accumulate
in float32, so the registers hold one chunk of each operand at a time.
"""

import triton
import triton.language as tl


@triton.jit
def dot_f32(a, b, acc, IEEE_DOT: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """acc + a @ b in float32: exact float32 products (IEEE_DOT), upcast inputs (UPCAST_DOT, the
    interpreter's bfloat16), or tensor cores with float32 accumulation (16-bit inputs)."""
    if UPCAST_DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif IEEE_DOT:
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def load_key_tile(
    k_ptrs, chunk, valid_n, key_dim, stride_kc, MASK_N: tl.constexpr, MASK_C: tl.constexpr, CHUNK_CK: tl.constexpr
):
    """Memory keys (CHUNK_CK, BLOCK_N) of channel chunk ``chunk``; ``k_ptrs`` points at chunk 0.

    Full tiles load without a length mask, so the loads vectorise and pipeline (cp.async / TMA).
    """
    ptrs = k_ptrs + chunk * CHUNK_CK * stride_kc
    mask_c = chunk * CHUNK_CK + tl.arange(0, CHUNK_CK) < key_dim
    if MASK_N:
        # Entries outside the valid range are never read, whatever they hold.
        return tl.load(ptrs, mask=valid_n[None, :] & mask_c[:, None], other=0.0)
    elif MASK_C:
        return tl.load(ptrs, mask=mask_c[:, None], other=0.0)
    else:
        return tl.load(ptrs)


@triton.jit
def load_query_chunk(q_ptrs, chunk, mask_p, key_dim, stride_qc, CHUNK_CK: tl.constexpr):
    """Query keys (BLOCK_P, CHUNK_CK) of channel chunk ``chunk``; ``q_ptrs`` points at chunk 0."""
    mask_c = chunk * CHUNK_CK + tl.arange(0, CHUNK_CK) < key_dim
    return tl.load(q_ptrs + chunk * CHUNK_CK * stride_qc, mask=mask_p[:, None] & mask_c[None, :], other=0.0)


@triton.jit
def key_products(
    q,
    q_ptrs,
    mask_p,
    k_ptrs,
    valid_n,
    key_dim,
    stride_qc,
    stride_kc,
    MASK_N: tl.constexpr,
    MASK_C: tl.constexpr,
    IEEE_DOT: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
    CHUNKS: tl.constexpr,
    CHUNK_CK: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """(dots (BLOCK_P, BLOCK_N), key squared norms (BLOCK_N,)), both float32, over all channels.

    With ``CHUNKS`` == 1, ``q`` is the register-resident query tile (BLOCK_P, CHUNK_CK);
    otherwise each chunk is loaded from ``q_ptrs``. A caller that does not use the norms pays
    nothing for them (the compiler drops them).
    """
    dots = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    norm2 = tl.zeros([BLOCK_N], dtype=tl.float32)
    if CHUNKS == 1:
        k = load_key_tile(k_ptrs, 0, valid_n, key_dim, stride_kc, MASK_N, MASK_C, CHUNK_CK)
        k32 = k.to(tl.float32)
        norm2 = tl.sum(k32 * k32, axis=0)
        dots = dot_f32(q, k, dots, IEEE_DOT, UPCAST_DOT)
    else:
        for chunk in tl.static_range(CHUNKS):
            k = load_key_tile(k_ptrs, chunk, valid_n, key_dim, stride_kc, MASK_N, MASK_C, CHUNK_CK)
            k32 = k.to(tl.float32)
            norm2 += tl.sum(k32 * k32, axis=0)
            q_chunk = load_query_chunk(q_ptrs, chunk, mask_p, key_dim, stride_qc, CHUNK_CK)
            dots = dot_f32(q_chunk, k, dots, IEEE_DOT, UPCAST_DOT)
    return dots, norm2
