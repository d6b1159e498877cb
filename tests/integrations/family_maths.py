"""The STM family's reads, restated in float64 from their papers' maths: the tests' spec.

XMem and Cutie (anisotropic L2): the logit of memory entry i at query pixel j is the negative
selection-weighted squared distance of their keys, ``-sum_c e_cj (k_ci - q_cj)^2``, times the
entry's shrinkage s_i, over sqrt(Ck). Without a selection the query's own norm (the same for every
entry of a query, so no change to its softmax) is left out: ``2 k_i.q_j - |k_i|^2``. STCN is that
last form with neither selection nor shrinkage. STM and SwiftNet use the dot product ``k_i.q_j``.
The softmax then runs over each query's ``k`` largest logits (or over all of them), the readout is
values times weights, and the usage is each entry's weight summed over the queries.

Everything here materialises the entries x pixels weights on purpose, in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def l2_logits(
    mem_key: Tensor,
    q_key: Tensor,
    shrinkage: Tensor | None = None,
    selection: Tensor | None = None,
) -> Tensor:
    """(B, N, P) float64 logits of the L2 read.

    Args:
        mem_key: (B, Ck, N); q_key: (B, Ck, P); shrinkage: (B, N) or (B, 1, N); selection: (B, Ck, P).
    """
    keys, queries = mem_key.double(), q_key.double()
    difference = keys[:, :, :, None] - queries[:, :, None, :]  # (B, Ck, N, P)
    if selection is not None:
        logits = -(selection.double()[:, :, None, :] * difference.square()).sum(1)
    else:
        # -|k - q|^2 + |q|^2: the per-query constant dropped.
        logits = -difference.square().sum(1) + queries.square().sum(1)[:, None, :]
    if shrinkage is not None:
        logits = logits * shrinkage.double().reshape(keys.shape[0], -1)[:, :, None]
    return logits / math.sqrt(keys.shape[1])


def dot_logits(mem_key: Tensor, q_key: Tensor) -> Tensor:
    """(B, N, P) float64 scaled dot products ``k_i.q_j / sqrt(Ck)``."""
    return torch.einsum("bcn,bcp->bnp", mem_key.double(), q_key.double()) / math.sqrt(mem_key.shape[1])


def softmax_weights(logits: Tensor, top_k: int | None = None) -> Tensor:
    """(B, N, P) weights: softmax over each query's ``top_k`` largest logits (all when None), 0 elsewhere."""
    if top_k is None or top_k >= logits.shape[1]:
        return torch.softmax(logits, dim=1)
    kth = logits.sort(dim=1, descending=True).values[:, top_k - 1 : top_k]  # (B, 1, P)
    kept = logits >= kth
    return torch.softmax(logits.masked_fill(~kept, float("-inf")), dim=1)


def kth_gap(logits: Tensor, top_k: int | None) -> float:
    """The smallest gap between a query's k-th and (k+1)-th logits (inf for a full softmax).

    Where it is tiny, float32 rounding may choose the other entry, as ``torch.topk`` may; tests
    draw inputs whose gap is clear.
    """
    if top_k is None or top_k >= logits.shape[1]:
        return math.inf
    ordered = logits.sort(dim=1, descending=True).values
    return float((ordered[:, top_k - 1] - ordered[:, top_k]).min())


def read(values: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Readout (B, Cv, P) = values (B or 1, Cv, N) @ weights (B, N, P), and usage (B, N)."""
    return values.double() @ weights, weights.sum(dim=2)
