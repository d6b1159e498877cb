"""One check of a fused family read (Triton kernels, emulated CUDA kernels) against the float64 truth.

:func:`check_family_read` draws fresh inputs, drops the queries whose k-th and (k+1)-th logits
nearly tie (either choice is right there), poisons every entry past an item's valid length with
NaN, runs the kernel through ``run`` and holds its output and usage against
``tests.ops.test_memory_read_family.truth`` (float32: 1e-4 of the largest value; half precision:
within twice PyTorch's own error in that dtype).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from swiftcuda.ops import reference
from tests.ops.test_memory_read_family import (
    assert_family_close,
    draw_inputs,
    ragged_lengths,
    truth,
    without_near_ties,
)

#: run(inputs, n_valid, options) -> (out, usage): inputs maps mem_key, mem_val, q_key, q_val,
#: selection, shrinkage to tensors in the case's dtype (q_val, selection, shrinkage may be None);
#: options holds affinity, scale and top_k.
Runner = Callable[[dict, Tensor, dict], tuple[Tensor, Tensor]]


def check_family_read(
    run: Runner,
    shape: tuple[int, int, int, int, int],
    dtype: torch.dtype,
    variant: tuple,
    top_k: int | None,
    generator: torch.Generator,
    *,
    with_q_val: bool = True,
    lengths: list[int] | None = None,
    scale: float | None = None,
) -> None:
    """The read of ``shape`` (B, Ck, Cv, N, P) in ``dtype`` with ``variant`` (affinity, selection,
    shrinkage) and ``top_k``, valid lengths ``lengths`` (default: ragged, one of them 1)."""
    affinity, selection, shrinkage = variant
    batch, _, _, entries, _ = shape
    inputs = draw_inputs(*shape, generator, q_val=with_q_val, selection=selection, shrinkage=shrinkage)
    inputs = {name: None if t is None else t.to(dtype).double() for name, t in inputs.items()}  # representable
    n_valid = ragged_lengths(batch, entries, generator) if lengths is None else torch.tensor(lengths)
    options = dict(affinity=affinity, scale=scale)
    inputs = without_near_ties(
        inputs, n_valid, top_k, **options, selection=inputs["selection"], shrinkage=inputs["shrinkage"]
    )
    expected, expected_usage = truth(
        inputs["mem_key"],
        inputs["mem_val"],
        inputs["q_key"],
        inputs["q_val"],
        n_valid,
        top_k=top_k,
        selection=inputs["selection"],
        shrinkage=inputs["shrinkage"],
        **options,
    )
    low = {name: None if t is None else t.to(dtype) for name, t in inputs.items()}
    torch_result = torch_usage = None
    if dtype != torch.float32:  # PyTorch's own answer in this dtype
        torch_result, torch_usage = reference.memory_read(
            low["mem_key"],
            low["mem_val"],
            low["q_key"],
            low["q_val"],
            n_valid,
            top_k=top_k,
            selection=low["selection"],
            shrinkage=low["shrinkage"],
            return_usage=True,
            **options,
        )
    for b, n in enumerate(n_valid.tolist()):  # entries past n_valid must never be read
        low["mem_key"][b, :, n:] = float("nan")
        low["mem_val"][b, :, n:] = float("nan")
        if shrinkage:
            low["shrinkage"][b, n:] = float("nan")
    out, usage = run(low, n_valid, dict(options, top_k=top_k))
    assert usage.dtype == torch.float32 and usage.shape == (batch, entries)
    assert_family_close(out.cpu(), expected, torch_result)
    assert_family_close(usage.cpu(), expected_usage, torch_usage)
    for b, n in enumerate(n_valid.tolist()):
        assert (usage[b, n:] == 0).all(), "invalid entries must get no usage"
