"""memory_update and memory_update_: every backend against a float64 computation of the spec.

The chosen pixels are compared as sets: a pixel may differ from the float64 choice only when its
similarity ties with the k-th lowest within rounding.
"""

from __future__ import annotations

import pytest
import torch

from swiftcuda import ops
from swiftcuda.ops.reference import novel_pixel_count
from tests.ops.interpreter import on_diagonal, skip_unless_chosen

# (batch, key channels, value channels, memory entries, new pixels)
SHAPES = [
    (1, 32, 128, 1, 11),
    (2, 32, 128, 50, 93),
    (3, 16, 24, 1000, 131),
    (1, 64, 32, 3001, 417),
    (2, 128, 8, 97, 1620),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Fractions of the new pixels kept (every one below 1, so which pixels are chosen is checked).
BETAS = [0.1, 0.37, 0.9]
# Cosines of unit vectors computed in float32 from half-precision inputs: rounding well below this.
TIE_TOLERANCE = 1e-5


def similarity_truth(mem_key: torch.Tensor, new_key: torch.Tensor) -> torch.Tensor:
    """(B, P) float64 best cosine similarity of each new pixel to the memory."""
    mem_unit = mem_key.double() / mem_key.double().norm(dim=1, keepdim=True)
    new_unit = new_key.double() / new_key.double().norm(dim=1, keepdim=True)
    return torch.einsum("bcp,bcn->bpn", new_unit, mem_unit).amax(dim=2)


def assert_valid_choice(chosen: torch.Tensor, similarity: torch.Tensor, count: int) -> None:
    """``chosen`` (k,) must be ascending, distinct, and the k lowest similarities up to ties."""
    assert chosen.shape == (count,)
    assert (chosen[1:] > chosen[:-1]).all(), "chosen pixels must be distinct and in ascending order"
    threshold = similarity.sort().values[count - 1]
    picked = torch.zeros_like(similarity, dtype=torch.bool)
    picked[chosen] = True
    assert (similarity[picked] <= threshold + TIE_TOLERANCE).all(), "a chosen pixel is not among the most novel"
    assert (similarity[~picked] >= threshold - TIE_TOLERANCE).all(), "a more novel pixel was left out"


def locate_columns(appended: torch.Tensor, new_key: torch.Tensor) -> torch.Tensor:
    """Which column of ``new_key`` (Ck, P) each appended column (Ck, k) is (exact match)."""
    matches = (appended.T[:, None, :] == new_key.T[None, :, :]).all(dim=2)  # (k, P)
    assert matches.any(dim=1).all(), "an appended key is not one of the new keys"
    return matches.float().argmax(dim=1)


def random_memory(shape, dtype, generator):
    batch, key_dim, value_dim, entries, pixels = shape
    draw = lambda *s: torch.randn(*s, generator=generator).to(dtype)  # noqa: E731
    return (
        draw(batch, key_dim, entries),
        draw(batch, value_dim, entries),
        draw(batch, key_dim, pixels),
        draw(batch, value_dim, pixels),
    )


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_functional_update_matches_spec(backend_device, shape, dtype, beta, generator):
    backend, device = backend_device
    # beta sets only how many pixels are kept: the kernels' sweep is the same for every beta.
    positions = (SHAPES.index(shape), DTYPES.index(dtype), BETAS.index(beta))
    skip_unless_chosen(backend, device, on_diagonal(positions, 3), "one beta per shape and dtype, each beta in turn")
    mem_key, mem_val, new_key, new_val = random_memory(shape, dtype, generator)
    count = novel_pixel_count(shape[4], beta)
    assert count < shape[4], "every case leaves pixels out, so which ones are chosen is checked"
    keys, values = ops.memory_update(
        *[t.to(device) for t in (mem_key, mem_val, new_key, new_val)], beta=beta, backend=backend
    )
    keys, values = keys.cpu(), values.cpu()
    entries = shape[3]
    assert keys.shape == (shape[0], shape[1], entries + count) and values.shape == (shape[0], shape[2], entries + count)
    assert torch.equal(keys[:, :, :entries], mem_key) and torch.equal(values[:, :, :entries], mem_val)
    similarity = similarity_truth(mem_key, new_key)
    for b in range(shape[0]):
        chosen = locate_columns(keys[b, :, entries:], new_key[b])
        assert_valid_choice(chosen, similarity[b], count)
        assert torch.equal(values[b, :, entries:], new_val[b][:, chosen]), "values must follow their keys"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_beta_one_appends_every_pixel_in_order(backend_device, dtype, generator):
    backend, device = backend_device
    mem_key, mem_val, new_key, new_val = random_memory((2, 32, 24, 50, 93), dtype, generator)
    keys, values = ops.memory_update(
        *[t.to(device) for t in (mem_key, mem_val, new_key, new_val)], beta=1.0, backend=backend
    )
    assert torch.equal(keys.cpu(), torch.cat([mem_key, new_key], dim=2))
    assert torch.equal(values.cpu(), torch.cat([mem_val, new_val], dim=2))


def test_ties_go_to_the_lower_pixel_index(backend_device, generator):
    """Duplicate new keys tie exactly: the lower index wins, so every backend agrees."""
    backend, device = backend_device
    # Pixel p + 32 duplicates pixel p (p < 32; pixels 64-69 are distinct, so 70 is no multiple of a
    # tile): a duplicate sits at the same place in its tile of 16 or 32 pixels as the original. Under
    # the Triton interpreter a tile's dot product is NumPy's BLAS, whose rounding can depend on a
    # row's place in the block (an offset of 15 split about one tie in eight there); on a GPU every
    # element of an MMA tile is reduced in the same order.
    mem_key, mem_val, new_key, new_val = random_memory((1, 32, 16, 40, 70), torch.float32, generator)
    new_key[:, :, 32:64] = new_key[:, :, :32]
    count = novel_pixel_count(70, 0.15)  # 11: tied pairs, and an odd count that splits one
    _, values = ops.memory_update(
        *[t.to(device) for t in (mem_key, mem_val, new_key, new_val)], beta=0.15, backend=backend
    )
    chosen = locate_columns(values[0, :, 40:].cpu(), new_val[0])  # values are distinct: they identify pixels
    # Duplicate columns may differ in the last bits of a float64 product: round the ties exact.
    similarity = similarity_truth(mem_key, new_key)[0].round(decimals=9)
    expected = torch.sort(similarity, stable=True).indices[:count].sort().values
    assert chosen.tolist() == expected.tolist()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_nan_key_is_never_the_most_novel_pixel(backend_device, dtype, generator):
    """A NaN in a new pixel's key makes its similarity to every memory entry NaN. The spec's best
    match (amax) is then NaN, and NaN sorts after every score, so that pixel is the LEAST novel and
    is never chosen while finite pixels remain. A max that drops NaN (fmaxf(-inf, NaN) = -inf)
    would instead make it the most novel of all, appended first."""
    backend, device = backend_device
    pixels, count = 30, novel_pixel_count(30, 0.2)  # 6 of 30
    mem_key, mem_val, new_key, new_val = random_memory((2, 16, 8, 40, pixels), dtype, generator)
    nan_pixels = [2, 11, 29]
    for pixel in nan_pixels:
        new_key[:, pixel % 16, pixel] = float("nan")  # one channel is enough
    keys, values = ops.memory_update(
        *[t.to(device) for t in (mem_key, mem_val, new_key, new_val)], beta=0.2, backend=backend
    )
    keys, values = keys.cpu(), values.cpu()
    assert torch.isfinite(keys[:, :, 40:]).all(), "a pixel with a NaN key was chosen as one of the most novel"
    similarity = similarity_truth(mem_key, new_key)
    for b in range(2):
        assert similarity[b, nan_pixels].isnan().all()
        finite = torch.tensor([p for p in range(pixels) if p not in nan_pixels])
        chosen = finite[locate_columns(keys[b, :, 40:], new_key[b, :, finite])]
        assert not set(chosen.tolist()) & set(nan_pixels)
        assert_valid_choice(chosen, similarity[b].nan_to_num(nan=float("inf")), count)
        assert torch.equal(values[b, :, 40:], new_val[b][:, chosen]), "values must follow their keys"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_in_place_update_on_capacity_buffers(backend_device, dtype, generator):
    """Fixed-capacity form: appends at n_valid, advances it, leaves everything else alone."""
    backend, device = backend_device
    batch, key_dim, value_dim, capacity, pixels = 4, 32, 40, 700, 211
    count = novel_pixel_count(pixels, 0.1)  # 22
    mem_key, mem_val, new_key, new_val = random_memory((batch, key_dim, value_dim, capacity, pixels), dtype, generator)
    # Item 3 has room for only 5 of its 22 pixels: the rest is dropped.
    lengths = [300, 1, capacity - count, capacity - 5]
    for b, n in enumerate(lengths):  # poison everything past the valid entries
        mem_key[b, :, n:] = float("nan")
        mem_val[b, :, n:] = float("nan")
    key_buf, val_buf = mem_key.clone().to(device), mem_val.clone().to(device)
    n_valid = torch.tensor(lengths, dtype=torch.int32, device=device)
    ops.memory_update_(key_buf, val_buf, n_valid, new_key.to(device), new_val.to(device), beta=0.1, backend=backend)
    key_buf, val_buf = key_buf.cpu(), val_buf.cpu()
    assert n_valid.cpu().tolist() == [min(n + count, capacity) for n in lengths]
    for b, n in enumerate(lengths):
        written = min(count, capacity - n)
        assert torch.equal(key_buf[b, :, :n], mem_key[b, :, :n]), "existing entries must not change"
        similarity = similarity_truth(mem_key[b : b + 1, :, :n], new_key[b : b + 1])[0]
        chosen = locate_columns(key_buf[b, :, n : n + written], new_key[b])
        if written == count:
            assert_valid_choice(chosen, similarity, count)
        assert torch.equal(val_buf[b, :, n : n + written], new_val[b][:, chosen])
        assert key_buf[b, :, n + written :].isnan().all(), "entries past the new length must stay untouched"


def test_in_place_update_with_int64_lengths_and_views(backend_device, generator):
    """The engine passes strided views of one buffer and may keep lengths as int64."""
    backend, device = backend_device
    pixels, capacity = 37, 120
    buffer_key = torch.randn(2, 16, pixels + capacity, generator=generator).to(device)
    buffer_val = torch.randn(2, 8, pixels + capacity, generator=generator).to(device)
    expected_key, expected_val = ops.memory_update(
        buffer_key[:, :, pixels : pixels + 50],
        buffer_val[:, :, pixels : pixels + 50],
        buffer_key[:, :, :pixels],
        buffer_val[:, :, :pixels],
        beta=0.1,
        backend="reference",
    )
    n_valid = torch.full((2,), 50, dtype=torch.int64, device=device)
    ops.memory_update_(
        buffer_key[:, :, pixels:],
        buffer_val[:, :, pixels:],
        n_valid,
        buffer_key[:, :, :pixels],
        buffer_val[:, :, :pixels],
        beta=0.1,
        backend=backend,
    )
    total = expected_key.shape[2]
    assert n_valid.cpu().tolist() == [total, total]
    torch.testing.assert_close(buffer_key[:, :, pixels : pixels + total].cpu(), expected_key.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(buffer_val[:, :, pixels : pixels + total].cpu(), expected_val.cpu(), rtol=0, atol=0)


def test_rejects_bad_beta_and_shapes():
    keys, values = torch.randn(1, 8, 5), torch.randn(1, 4, 5)
    with pytest.raises(ValueError, match="beta"):
        ops.memory_update(keys, values, torch.randn(1, 8, 3), torch.randn(1, 4, 3), beta=0.0)
    with pytest.raises(ValueError, match="match the memory"):
        ops.memory_update(keys, values, torch.randn(1, 6, 3), torch.randn(1, 4, 3))
