"""The C++ CPU kernel of the family's read (``torch.ops.swiftcuda.memory_read_family``): the paths
the shared backend tests of test_memory_read_family.py do not reach, and the raw op's contract.

The split memory axis (more threads than query tiles) and its merge of the per-split top-k lists,
long memories over many tiles, outputs and usage buffers that are not contiguous, exact ties,
opcheck / fake tensors / torch.compile, and the raw op's argument checks.
"""

from __future__ import annotations

import pytest
import torch

from swiftcuda import ops
from swiftcuda.ops import extension as _extension
from tests.ops.test_memory_read_family import assert_family_close, draw_inputs, truth, without_near_ties
from tests.ops.tolerances import poisoned

pytestmark = pytest.mark.skipif(
    not _extension.status().loaded, reason=f"extension unavailable: {_extension.status().error}"
)


@pytest.fixture
def four_threads():
    """More threads than query tiles: the CPU read splits the memory axis."""
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def check_against_truth(inputs, n_valid, generator, **options):
    """Run the CPU backend on float32 ``inputs`` (float64 tensors, near ties removed) and compare."""
    inputs = without_near_ties(
        inputs,
        n_valid,
        options.get("top_k"),
        affinity=options.get("affinity", "dot"),
        selection=inputs["selection"],
        shrinkage=inputs["shrinkage"],
    )
    args = [inputs["mem_key"], inputs["mem_val"], inputs["q_key"], inputs["q_val"]]
    expected, expected_usage = truth(
        *args, n_valid, selection=inputs["selection"], shrinkage=inputs["shrinkage"], **options
    )
    as_float = lambda t: None if t is None else t.float()  # noqa: E731
    out = poisoned(expected.shape, torch.float32, torch.device("cpu"))
    result, usage = ops.memory_read(
        *map(as_float, args),
        n_valid=n_valid,
        selection=as_float(inputs["selection"]),
        shrinkage=as_float(inputs["shrinkage"]),
        out=out,
        return_usage=True,
        backend="cpu",
        **options,
    )
    assert_family_close(result, expected)
    assert_family_close(usage, expected_usage)


@pytest.mark.parametrize("top_k", [None, 5, 64], ids=str)
def test_split_memory_axis(four_threads, top_k, generator):
    """Three query tiles of one item and four threads: the lists of several splits are merged."""
    inputs = draw_inputs(2, 32, 24, 4100, 7, generator, q_val=False, selection=True, shrinkage=True)
    check_against_truth(inputs, torch.tensor([4100, 1500]), generator, affinity="l2", top_k=top_k)


def test_long_memory_many_tiles(generator):
    inputs = draw_inputs(1, 64, 70, 6001, 130, generator, q_val=True)
    check_against_truth(inputs, None, generator, affinity="l2", top_k=30)


def test_every_value_channel_block(generator):
    """Value channels past one gather block (64) and not a multiple of it."""
    inputs = draw_inputs(2, 16, 150, 900, 66, generator, q_val=True, shrinkage=True)
    check_against_truth(inputs, torch.tensor([900, 333]), generator, affinity="l2", top_k=20)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_strided_out_and_usage(dtype, generator):
    """out with a strided last dimension and a non-contiguous usage buffer, through the raw op."""
    inputs = draw_inputs(2, 16, 24, 500, 70, generator, q_val=False, selection=True)
    inputs = without_near_ties(inputs, None, 10, affinity="l2", selection=inputs["selection"], shrinkage=None)
    pixels = inputs["q_key"].shape[2]
    expected, expected_usage = truth(
        inputs["mem_key"], inputs["mem_val"], inputs["q_key"], affinity="l2", selection=inputs["selection"], top_k=10
    )
    low = {name: None if t is None else t.to(dtype) for name, t in inputs.items()}
    out = torch.full((2, pixels, 24), float("nan"), dtype=dtype).transpose(1, 2)
    usage = torch.full((500, 2), float("nan")).t()
    torch.ops.swiftcuda.memory_read_family.into(
        low["mem_key"], low["mem_val"], low["q_key"], None, None, None, low["selection"], "l2", None, 10, out, usage
    )
    torch_result, torch_usage = ops.memory_read(
        low["mem_key"],
        low["mem_val"],
        low["q_key"],
        affinity="l2",
        selection=low["selection"],
        top_k=10,
        return_usage=True,
        backend="reference",
    )
    assert_family_close(out, expected, None if dtype == torch.float32 else torch_result)
    assert_family_close(usage, expected_usage, None if dtype == torch.float32 else torch_usage)


def test_exact_ties_either_way(generator):
    """Every entry stored twice (same key, same value) and an odd k: the k-th place is an exact tie
    between the two copies of one entry. Either copy gives the same readout, and the two copies'
    usage sums to the truth's."""
    inputs = draw_inputs(1, 16, 12, 200, 45, generator, q_val=False)
    # Distinct entries must not nearly tie at the 7th place: that is decided by rounding.
    inputs = without_near_ties(inputs, None, 7, affinity="l2", selection=None, shrinkage=None)
    keys, values = inputs["mem_key"].repeat(1, 1, 2), inputs["mem_val"].repeat(1, 1, 2)
    expected, expected_usage = truth(keys, values, inputs["q_key"], affinity="l2", top_k=13)
    result, usage = ops.memory_read(
        keys.float(),
        values.float(),
        inputs["q_key"].float(),
        affinity="l2",
        top_k=13,
        return_usage=True,
        backend="cpu",
    )
    assert_family_close(result, expected)
    assert_family_close(usage[:, :200] + usage[:, 200:], expected_usage[:, :200] + expected_usage[:, 200:])


def test_invalid_entries_are_never_read(generator):
    """NaN past n_valid in keys, values and shrinkage, and an item with no valid entry."""
    inputs = draw_inputs(3, 16, 8, 300, 20, generator, q_val=False, shrinkage=True)
    n_valid = torch.tensor([0, 300, 17])
    for name in ("mem_key", "mem_val"):
        inputs[name][0] = float("nan")
        inputs[name][2, :, 17:] = float("nan")
    inputs["shrinkage"][0] = float("nan")
    inputs["shrinkage"][2, 17:] = float("nan")
    for top_k in (None, 30):
        check_against_truth(inputs, n_valid, generator, affinity="l2", top_k=top_k)


# ---------------------------------------------------------------------------------------------
# The raw op: opcheck, fakes, torch.compile, argument checks.


def family_args(dtype=torch.float32, q_val=True, l2=True):
    mem_key, mem_val = torch.randn(2, 16, 37, dtype=dtype), torch.randn(2, 12, 37, dtype=dtype)
    q_key = torch.randn(2, 16, 23, dtype=dtype)
    q_value = torch.randn(2, 12, 23, dtype=dtype) if q_val else None
    shrinkage = 1 + torch.rand(2, 37, dtype=dtype) if l2 else None
    selection = torch.rand(2, 16, 23, dtype=dtype) if l2 else None
    return mem_key, mem_val, q_key, q_value, torch.tensor([37, 5]), shrinkage, selection


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("top_k", [None, 4], ids=str)
def test_opcheck(dtype, top_k):
    args = family_args(dtype)
    op = torch.ops.swiftcuda.memory_read_family
    torch.library.opcheck(op.default, (*args, "l2", 0.2, top_k, True))
    torch.library.opcheck(op.default, (*family_args(dtype, q_val=False, l2=False), "dot", None, top_k, False))
    out, usage = torch.empty(2, 24, 23, dtype=dtype), torch.empty(2, 37)
    torch.library.opcheck(op.into, (*args, "l2", None, top_k, out, usage))
    torch.library.opcheck(op.into, (*args, "l2", None, top_k, out, None))


def test_fake_shapes_on_meta_tensors():
    args = [None if t is None else t.to("meta") for t in family_args(q_val=False)]
    out, usage = torch.ops.swiftcuda.memory_read_family(*args, "l2", None, 3, True)
    assert out.shape == (2, 12, 23) and usage.shape == (2, 37) and usage.dtype == torch.float32
    out, usage = torch.ops.swiftcuda.memory_read_family(*args, "l2", None, 3, False)
    assert usage.numel() == 0


def test_compiles_without_graph_breaks():
    args = family_args()

    def read(*args):
        return torch.ops.swiftcuda.memory_read_family(*args, "l2", None, 5, True)

    compiled = torch.compile(read, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(*args), read(*args))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(affinity="cos"), "affinity must be"),
        (dict(top_k=65), "top_k must be None or 1 to 64"),
        (dict(top_k=0), "top_k must be None or 1 to 64"),
        (dict(scale=float("inf")), "scale must be finite"),
        (dict(affinity="dot"), "belong to the l2 affinity"),
        (dict(shrinkage=torch.rand(2, 36)), "shrinkage must be"),
        (dict(selection=torch.rand(2, 16, 22)), "selection must have"),
        (dict(q_val=torch.randn(2, 11, 23)), "q_val"),
    ],
)
def test_raw_op_rejects_bad_arguments(change, message):
    mem_key, mem_val, q_key, q_val, n_valid, shrinkage, selection = family_args()
    call = dict(q_val=q_val, shrinkage=shrinkage, selection=selection, affinity="l2", scale=None, top_k=3)
    call.update(change)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.swiftcuda.memory_read_family(
            mem_key,
            mem_val,
            q_key,
            call["q_val"],
            n_valid,
            call["shrinkage"],
            call["selection"],
            call["affinity"],
            call["scale"],
            call["top_k"],
            False,
        )


def test_raw_into_rejects_wrong_buffers():
    args = family_args()
    with pytest.raises(RuntimeError, match="out must have shape"):
        torch.ops.swiftcuda.memory_read_family.into(*args, "l2", None, 3, torch.empty(2, 12, 23), None)
    with pytest.raises(RuntimeError, match="usage must be a float32"):
        torch.ops.swiftcuda.memory_read_family.into(*args, "l2", None, 3, torch.empty(2, 24, 23), torch.empty(2, 36))
