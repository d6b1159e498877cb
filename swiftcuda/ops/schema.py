"""Each op's schema, declared once: the calling contract every backend's implementation has.

The C++ extension defines its ops (``torch.ops.swiftcuda``) with these schemas in
``csrc/registration.cpp`` (a test holds the two equal); the Triton backend registers its ops
(``torch.ops.swiftcuda_triton``) from this table; the reference functions in
:mod:`swiftcuda.ops.reference` take the same arguments in the same order. So the public functions
of :mod:`swiftcuda.ops` call whichever implementation the backend table picks with one argument
list.

Names are ``op`` or ``op.overload``; ``memory_read.into`` is the read into a caller's buffer.
"""

from __future__ import annotations

import torch

#: Op name -> schema without the name: ``(arguments) -> returns``, in torch's schema language.
SCHEMAS: dict[str, str] = {
    "memory_read": "(Tensor mem_key, Tensor mem_val, Tensor q_key, Tensor q_val, Tensor? n_valid=None) -> Tensor",
    "memory_read.into": (
        "(Tensor mem_key, Tensor mem_val, Tensor q_key, Tensor q_val, Tensor? n_valid, Tensor(a!) out) -> ()"
    ),
    # The STM family's read (affinity, scale, shrinkage, selection, top-k, readout alone, usage):
    # the result, and the (B, N) usage (an empty tensor without return_usage).
    "memory_read_family": (
        "(Tensor mem_key, Tensor mem_val, Tensor q_key, Tensor? q_val=None, Tensor? n_valid=None, "
        'Tensor? shrinkage=None, Tensor? selection=None, str affinity="dot", float? scale=None, int? top_k=None, '
        "bool return_usage=False) -> (Tensor, Tensor)"
    ),
    "memory_update": "(Tensor mem_key, Tensor mem_val, Tensor new_key, Tensor new_val, float beta) -> (Tensor, Tensor)",
    "memory_update_": (
        "(Tensor(a!) key_buf, Tensor(b!) val_buf, Tensor(c!) n_valid, Tensor new_key, Tensor new_val, float beta) -> ()"
    ),
    "rsp": "(Tensor probs, int factor) -> (Tensor, Tensor)",
    "soft_aggregate": "(Tensor object_probs) -> Tensor",
    "frame_variation": (
        "(Tensor frame, Tensor previous_frame, Tensor object_probs, Tensor previous_probs, "
        "float frame_threshold, float mask_threshold) -> Tensor"
    ),
}


def full_schema(op: str) -> str:
    """``name(arguments) -> returns``: the schema as torch prints it, without the namespace."""
    return op + SCHEMAS[op]


def split_name(op: str) -> tuple[str, str]:
    """(name, overload) of ``op``; the overload is ``"default"`` when it has none."""
    name, _, overload = op.partition(".")
    return name, overload or "default"


def mutated_arguments(op: str) -> tuple[str, ...]:
    """The arguments ``op`` writes into (``Tensor(a!)`` in its schema), as torch.library asks for them."""
    parsed = torch._C.parse_schema(full_schema(op))
    return tuple(arg.name for arg in parsed.arguments if arg.alias_info is not None and arg.alias_info.is_write)
