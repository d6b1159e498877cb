"""Drop-in modules for code built on the official SwiftNet / STM layers.

Both compute the dot-product read with the fused kernels of :func:`swiftcuda.ops.memory_read`,
without the N x HW attention matrix, and take the official ``forward(m_in, m_out, q_in, q_out)``
arguments:

- :class:`MemoryRead` replaces the ``Memory`` module of the official SwiftNet release, whose
  forward returns the readout alone;
- :class:`STMMemoryRead` replaces STM's ``Memory``, whose forward returns a pair that STM unpacks
  (``m4, viz = self.Memory(...)``): the readout and, in place of the attention STM returns for
  visualisation, ``None`` (the fused read never builds it).

Results equal the official modules' up to rounding (the official SwiftNet module takes ``exp`` of
the raw logits; the fused read subtracts the running maximum first, so it does not overflow where
the official one returns NaN). :mod:`swiftcuda.integrations` patches the official classes in
place instead, for code that builds its own modules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from swiftcuda import ops

__all__ = ["MemoryRead", "STMMemoryRead", "read_and_concat"]


def read_and_concat(
    m_in: Tensor,
    m_out: Tensor,
    q_in: Tensor,
    q_out: Tensor,
    n_valid: Tensor | None = None,
    backend: str | None = None,
) -> Tensor:
    """The official ``Memory`` modules' read: attention over the memory, then the query values.

    Args:
        m_in: (B, Ck, N) memory keys; STM's (B, Ck, T, H, W) is accepted too (flattened).
        m_out: (B, Cv, N) memory values, or (B, Cv, T, H, W).
        q_in: (B, Ck, H, W) query keys (may be expanded over B, as the official code does).
        q_out: (B, Cv, H, W) query values.
        n_valid: optional (B,) valid memory lengths (fixed-capacity memories).
        backend: op backend (None for the best available on the inputs' device).

    Returns:
        (B, 2 Cv, H, W): ``cat([read, q_out], dim=1)`` with
        ``read = m_out @ softmax_N(m_in^T q_in / sqrt(Ck))``.
    """
    if q_in.dim() != 4 or q_out.dim() != 4:
        raise ValueError(f"q_in and q_out must be (B, C, H, W), got {tuple(q_in.shape)} and {tuple(q_out.shape)}")
    if m_in.dim() < 3 or m_out.dim() < 3:
        raise ValueError(
            f"m_in and m_out must be (B, C, N) or (B, C, T, H, W), got {tuple(m_in.shape)} and {tuple(m_out.shape)}"
        )
    batch, value_dim, height, width = q_out.shape
    keys, values = m_in.flatten(2), m_out.flatten(2)
    # flatten keeps expanded (stride-0) batches as views: the kernels read them in place.
    out = torch.empty((batch, 2 * value_dim, height * width), dtype=q_out.dtype, device=q_out.device)
    ops.memory_read(keys, values, q_in.flatten(2), q_out.flatten(2), n_valid=n_valid, out=out, backend=backend)
    return out.view(batch, 2 * value_dim, height, width)


class MemoryRead(nn.Module):
    """Softmax memory read with the official SwiftNet ``Memory.forward`` signature and output.

    Example::

        model.Memory = swiftcuda.nn.MemoryRead()   # official SwiftNet, unchanged otherwise

    For STM, whose ``Memory`` returns a pair, use :class:`STMMemoryRead`.

    Args:
        backend: op backend (None for the best available on the inputs' device).
    """

    def __init__(self, backend: str | None = None) -> None:
        super().__init__()
        self.backend = backend

    def forward(
        self,
        m_in: Tensor,
        m_out: Tensor,
        q_in: Tensor,
        q_out: Tensor,
        n_valid: Tensor | None = None,
    ) -> Tensor:
        """Read the memory at every query pixel and append the query values.

        Args and result as :func:`read_and_concat`: (B, 2 Cv, H, W).
        """
        return read_and_concat(m_in, m_out, q_in, q_out, n_valid, self.backend)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


class STMMemoryRead(MemoryRead):
    """STM's ``Memory`` module on the fused read: ``forward`` returns ``(readout, None)``.

    STM unpacks its memory module's output as ``(readout, attention)`` and uses the attention only
    for visualisation; the fused read never builds that (N x HW) matrix, so the second item is
    ``None``.

    Example::

        model.Memory = swiftcuda.nn.STMMemoryRead()   # official STM, unchanged otherwise
    """

    def forward(  # type: ignore[override]
        self,
        m_in: Tensor,
        m_out: Tensor,
        q_in: Tensor,
        q_out: Tensor,
        n_valid: Tensor | None = None,
    ) -> tuple[Tensor, None]:
        """Read as :func:`read_and_concat` ((B, 2 Cv, H, W)) and pair it with ``None``."""
        return read_and_concat(m_in, m_out, q_in, q_out, n_valid, self.backend), None
