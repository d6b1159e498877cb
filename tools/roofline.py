"""Roofline predictions for SwiftNet's kernels and for one whole frame on an H100 / H200.

Each op's cost is counted as (bytes moved, tensor-core FLOPs, FP32-pipe instructions, special-function
operations) and turned into a time with the roofline model: an op runs no faster than its memory
traffic at the peak bandwidth, nor than its arithmetic at the peak rate of the busiest pipe:

    time = max(bytes / bandwidth, tensor_flops / tensor_peak, alu_ops / alu_rate, sfu_ops / sfu_rate)

Bytes are the compulsory traffic: every input read once, every output written once, in the dtypes
the engine uses (the memory in the model's dtype, probabilities in float32, lengths in int32). A
kernel that re-reads a tile, spills registers or writes a workspace moves more and runs slower: the
prediction is a lower bound on time, which the first GPU run compares with what it measures.

The frame's prediction (:func:`frame_ops`) traces one steady-state step of the real model on the
``meta`` device (no memory, no arithmetic): every convolution with its input, weight and output
bytes and its FLOPs, every other ATen op with its bytes (the eager engine launches one kernel for
each), and the fused kernels from the formulas of this module. Op times add up (one kernel at a time,
no overlap), and a fixed launch overhead per kernel is added on top as an assumption to be measured.

Hardware constants (dense figures; NVIDIA's datasheets quote tensor-core rates "with sparsity",
i.e. twice the dense rate):

- NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column: GPU memory bandwidth 3.35 TB/s;
  FP16 and BF16 Tensor Core 1,979 TFLOPS with sparsity -> 989 TFLOP/s dense; TF32 Tensor Core
  989 TFLOPS with sparsity -> 494 TFLOP/s dense; FP32 (CUDA cores, FMA counted as 2 FLOPs) 67 TFLOP/s.
- NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column: memory bandwidth 4.8 TB/s; the same
  FP16/BF16, TF32 and FP32 figures as the H100 SXM (same GH100 chip, 132 SMs).
- Special-function unit (exp2, log2, rsqrt, reciprocal): 3.9 T operations/s on an H100 SXM5, as
  stated in the FlashAttention-3 paper (Shah et al., 2024, arXiv:2407.08608, section 3.1:
  "989 TFLOPS of FP16 matmul but only 3.9 TFLOPS of special functions"); 16 MUFU results per SM per
  clock x 132 SMs x 1.83 GHz. The same for the H200.
- FP32-pipe instructions (max, add, multiply, FMA, conversions): 67 TFLOP/s / 2 FLOPs per FMA =
  33.5 T instructions/s; every non-tensor instruction is counted as one slot of that pipe.

Assumptions (to be measured, not datasheet figures): a kernel launch costs ``launch_us`` (2.5 µs
by default; CUDA graph replay is commonly quoted at 2-3 µs per kernel node, and about 1 µs at best);
pipes overlap perfectly inside a kernel and not at all between kernels; each kernel fills the GPU
(no wave quantisation: a 1/16-resolution map of 1,620 pixels is a small grid for 132 SMs).

Shapes (480p): a 480x854 frame is padded to 480x864 (:class:`swiftcuda.inference.padding.Padding`,
multiples of 16), so the 1/16 grid is 30x54 = 1,620 query pixels (P). A "memory of F frames" is the
official schedule's memory after F frames were memorised: the first frame in full (P entries) and
F - 1 updates of the beta = 10 % most novel pixels (k = 162 entries each), capped at the long-term
capacity (16,384 entries by default); the read also covers the previous frame, read in full beside
the long-term memory (:mod:`swiftcuda.inference.memory`), so it sees N = P + long-term entries.
With one update every 5th frame the capacity is reached after 1 + (16384 - 1620) / 162 = 92
memorised frames, about 455 video frames: "capacity" is the steady state of any longer video.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from swiftcuda.inference.memory import default_capacity
from swiftcuda.inference.padding import Padding
from swiftcuda.model.config import SwiftNetConfig, get_config
from swiftcuda.ops.reference import novel_pixel_count

# -- hardware ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSpec:
    """Peak rates of one GPU (see the module docstring for each figure's source).

    Attributes:
        name: how tables name it.
        bandwidth: DRAM bandwidth, bytes/s.
        half_tensor: dense FP16/BF16 tensor-core rate, FLOP/s.
        tf32_tensor: dense TF32 tensor-core rate, FLOP/s.
        fp32: FP32 CUDA-core rate, FLOP/s (an FMA is 2 FLOPs).
        sfu: special-function operations/s.
        sms: streaming multiprocessors.
    """

    name: str
    bandwidth: float
    half_tensor: float
    tf32_tensor: float
    fp32: float
    sfu: float
    sms: int

    @property
    def alu_rate(self) -> float:
        """FP32-pipe instructions/s (one FMA is one instruction and 2 FLOPs)."""
        return self.fp32 / 2


H100_SXM = GpuSpec("H100 SXM", 3.35e12, 989e12, 494e12, 67e12, 3.9e12, 132)
H200_SXM = GpuSpec("H200 SXM", 4.8e12, 989e12, 494e12, 67e12, 3.9e12, 132)
GPUS: tuple[GpuSpec, ...] = (H100_SXM, H200_SXM)

#: The speed target: 1,500 frames per second, i.e. this many µs per frame.
TARGET_FPS = 1500
#: Assumed cost of one kernel launch (CUDA graph replay), µs; an assumption to be measured.
DEFAULT_LAUNCH_US = 2.5

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def element_size(dtype: str) -> int:
    """Bytes per element of ``dtype`` ("fp32", "fp16" or "bf16")."""
    return DTYPES[dtype].itemsize


# -- costs and their roofline ------------------------------------------------------------------


@dataclass(frozen=True)
class OpCost:
    """What one op (one kernel, or a group of them) must do.

    Attributes:
        name: the op (a kernel, a layer's qualified name, an ATen op).
        stage: the part of the step it belongs to (for the per-frame breakdown).
        bytes: compulsory DRAM traffic.
        tensor_flops: multiply-add FLOPs a tensor core can take (matrix products, convolutions).
        alu_ops: FP32-pipe instructions outside the tensor cores.
        sfu_ops: special-function operations (exp, log, rsqrt, reciprocal).
        launches: kernels launched.
        matmul: how ``tensor_flops`` run: "half" (FP16/BF16 tensor cores), "tf32" (TF32 tensor
            cores) or "ieee" (the FP32 pipe: the fused kernels' float32 dots are IEEE).
        kind: "kernel" (a fused op), "conv" (a convolution) or "glue" (any other ATen op).
    """

    name: str
    stage: str
    bytes: float
    tensor_flops: float = 0.0
    alu_ops: float = 0.0
    sfu_ops: float = 0.0
    launches: int = 1
    matmul: str = "half"
    kind: str = "kernel"

    def scaled(self, factor: float) -> OpCost:
        """This cost times ``factor`` (an op run on a fraction of the frames, say)."""
        return replace(
            self,
            bytes=self.bytes * factor,
            tensor_flops=self.tensor_flops * factor,
            alu_ops=self.alu_ops * factor,
            sfu_ops=self.sfu_ops * factor,
        )

    @property
    def flops(self) -> float:
        """Tensor FLOPs plus FP32-pipe instructions (each one FLOP): the arithmetic-intensity numerator."""
        return self.tensor_flops + self.alu_ops


@dataclass(frozen=True)
class Roofline:
    """An op's predicted time on one GPU, seconds, and what bounds it."""

    memory_s: float
    tensor_s: float
    alu_s: float
    sfu_s: float

    @property
    def compute_s(self) -> float:
        return max(self.tensor_s, self.alu_s, self.sfu_s)

    @property
    def time_s(self) -> float:
        return max(self.memory_s, self.compute_s)

    @property
    def bound(self) -> str:
        """ "memory", "tensor", "alu" (FP32 pipe) or "sfu" (exp): the largest term."""
        terms = {"memory": self.memory_s, "tensor": self.tensor_s, "alu": self.alu_s, "sfu": self.sfu_s}
        return max(terms, key=terms.__getitem__)


def roofline(cost: OpCost, gpu: GpuSpec) -> Roofline:
    """The roofline time of ``cost`` on ``gpu`` (pipes overlap within the op)."""
    alu_ops = cost.alu_ops
    if cost.matmul == "ieee":  # float32 dots run as FMAs on the FP32 pipe
        tensor_s, alu_ops = 0.0, alu_ops + cost.tensor_flops / 2
    else:
        peak = gpu.tf32_tensor if cost.matmul == "tf32" else gpu.half_tensor
        tensor_s = cost.tensor_flops / peak
    return Roofline(cost.bytes / gpu.bandwidth, tensor_s, alu_ops / gpu.alu_rate, cost.sfu_ops / gpu.sfu)


def arithmetic_intensity(cost: OpCost) -> float:
    """FLOPs (tensor FLOPs + FP32-pipe instructions) per byte moved."""
    return cost.flops / cost.bytes if cost.bytes else math.inf


# -- shapes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One configuration of the engine at one moment of a video.

    Attributes:
        variant: "r18" or "r50".
        objects: objects segmented (O).
        memory_frames: frames in the long-term memory (first frame + updates), or 0 for "at capacity".
        height, width: the frame before padding.
        beta: fraction of a frame's pixels an update appends.
        capacity: long-term entries per object; None for the engine's default.
    """

    variant: str
    objects: int
    memory_frames: int
    height: int = 480
    width: int = 854
    beta: float = 0.1
    capacity: int | None = None

    @property
    def config(self) -> SwiftNetConfig:
        return get_config(self.variant)

    @property
    def padding(self) -> Padding:
        return Padding.to_multiple(self.height, self.width, self.config.stride)

    @property
    def padded(self) -> tuple[int, int]:
        pad = self.padding
        return self.height + pad.top + pad.bottom, self.width + pad.left + pad.right

    @property
    def grid(self) -> tuple[int, int]:
        """The 1/16 feature grid (h, w)."""
        height, width = self.padded
        return height // self.config.stride, width // self.config.stride

    @property
    def pixels(self) -> int:
        """P: query (and memory-frame) pixels at 1/16."""
        h, w = self.grid
        return h * w

    @property
    def novel(self) -> int:
        """k: entries one update appends."""
        return novel_pixel_count(self.pixels, self.beta)

    @property
    def long_term_capacity(self) -> int:
        return self.capacity if self.capacity is not None else default_capacity(self.pixels)

    @property
    def long_term(self) -> int:
        """L: long-term entries per object (first frame in full, then k per update, capped)."""
        if self.memory_frames == 0:
            return self.long_term_capacity
        return min(self.pixels + (self.memory_frames - 1) * self.novel, self.long_term_capacity)

    @property
    def read_entries(self) -> int:
        """N: entries a read covers (previous frame + long-term memory)."""
        return self.pixels + self.long_term

    @property
    def at_capacity(self) -> bool:
        """Whether the next update must evict entries first."""
        return self.long_term + self.novel > self.long_term_capacity

    @property
    def memory_label(self) -> str:
        return "capacity" if self.memory_frames == 0 else f"{self.memory_frames} fr"


# -- the fused kernels -------------------------------------------------------------------------


def _matmul(dtype: str) -> str:
    return "ieee" if dtype == "fp32" else "half"


#: FP32-pipe instructions per (query pixel, memory entry) pair of the online softmax: the running
#: maximum, the FMA that scales the logit and subtracts the maximum, the add into the row sum and
#: the conversion of the probability for the second product (an assumption: FlashAttention-style).
READ_ALU_PER_PAIR = 4
#: FP32-pipe instructions per pair of the best-match sweep: the scale by the inverse norm and the max.
MATCH_ALU_PER_PAIR = 2


def memory_read_cost(s: Scenario, dtype: str) -> OpCost:
    """The fused memory read over N = P + L entries, for all O objects.

    Reads each object's memory keys (Ck x N) and values (Cv x N) once, the query key and value once
    (the engine broadcasts one (Ck, P) / (Cv, P) map over the objects with a zero stride), the lengths
    (int32), and writes the (O, 2Cv, P) output. FLOPs: 2 Ck N P (logits) + 2 Cv N P (weighted sum)
    per object; N P exponentials per object.
    """
    c, size = s.config, element_size(dtype)
    o, n, p = s.objects, s.read_entries, s.pixels
    bytes_ = (
        size * (o * (c.key_dim + c.value_dim) * n + (c.key_dim + c.value_dim) * p + o * 2 * c.value_dim * p) + 4 * o
    )
    return OpCost(
        "memory_read",
        "kernels",
        bytes_,
        tensor_flops=2.0 * o * (c.key_dim + c.value_dim) * n * p,
        alu_ops=float(READ_ALU_PER_PAIR * o * n * p),
        sfu_ops=float(o * n * p),
        matmul=_matmul(dtype),
    )


def read_splits(
    s: Scenario, gpu: GpuSpec = H100_SXM, block_p: int = 64, block_v: int = 128, min_entries: int = 512
) -> int:
    """Memory-axis splits the Triton read launcher chooses (two programs per SM, >= 512 entries each).

    A model of ``swiftcuda.ops._triton_launch.auto_splits`` with the block sizes of commit 49b3ec3
    (pass others when the launcher's tiles change).
    """
    tiles = math.ceil(s.pixels / block_p) * s.objects * math.ceil(s.config.value_dim / block_v)
    return max(1, min(math.ceil(2 * gpu.sms / tiles), s.read_entries // min_entries))


def read_split_workspace_cost(s: Scenario, splits: int) -> OpCost:
    """Extra traffic of a split read (not compulsory): the float32 partial sums (Cv per pixel) and
    running maximum and sum (2 per pixel) of every split, written by the read and read back by the
    combine kernel (one more launch)."""
    c = s.config
    if splits <= 1:
        return OpCost("memory_read split workspace", "kernels", 0.0, launches=0)
    bytes_ = 2 * 4 * splits * s.objects * (c.value_dim + 2) * s.pixels
    alu = 2 * splits * s.objects * (c.value_dim + 2) * s.pixels
    return OpCost(
        f"memory_read split workspace (S={splits})",
        "kernels",
        float(bytes_),
        alu_ops=float(alu),
        sfu_ops=float(splits * s.objects * s.pixels),
    )


def best_match_cost(s: Scenario, dtype: str) -> OpCost:
    """Each new pixel's best cosine similarity to the L long-term entries, all objects.

    Reads the memory keys (Ck x L) and the new frame's keys (Ck x P) per object, writes P float32
    maxima per object. FLOPs: 2 Ck L P; norms Ck (L + P) FMAs and L + P rsqrt; per pair a scale and
    a max.
    """
    c, size = s.config, element_size(dtype)
    o, n, p = s.objects, s.long_term, s.pixels
    bytes_ = size * o * c.key_dim * (n + p) + 4 * o * p + 4 * o
    return OpCost(
        "best_match",
        "kernels (update)",
        float(bytes_),
        tensor_flops=2.0 * o * c.key_dim * n * p,
        alu_ops=float(o * (c.key_dim * (n + p) + MATCH_ALU_PER_PAIR * n * p)),
        sfu_ops=float(o * (n + p)),
        matmul=_matmul(dtype),
    )


def select_novel_cost(s: Scenario) -> OpCost:
    """The k lowest of P best matches per object (a bitonic sort of packed keys in one block).

    Reads P float32 maxima and writes P int32 destinations per object; its sort is about
    n/2 log2(n) (log2(n) + 1) / 2 compare-exchanges (n = P rounded up to a power of two), three
    instructions each. It is latency-bound in practice: one block per object.
    """
    o, p = s.objects, s.pixels
    n = 1 << max(p - 1, 0).bit_length()
    stages = int(math.log2(n)) * (int(math.log2(n)) + 1) // 2
    return OpCost(
        "select_novel", "kernels (update)", float(4 * o * p * 2 + 4 * o), alu_ops=float(o * 3 * (n // 2) * stages)
    )


def append_cost(s: Scenario, dtype: str) -> OpCost:
    """The k chosen columns' keys and values copied to the end of each object's memory."""
    c, size = s.config, element_size(dtype)
    o, k = s.objects, s.novel
    bytes_ = 4 * o * s.pixels + 2 * size * o * (c.key_dim + c.value_dim) * k + 8 * o  # destinations, columns, lengths
    return OpCost("append", "kernels (update)", float(bytes_))


def evict_cost(s: Scenario, dtype: str) -> OpCost:
    """Room made at capacity on the host-decided path (:meth:`MemoryStore._make_room`).

    Per object, every long-term entry after the first frame that stays is moved k places left, through
    a clone (the ranges overlap): read, write, read, write of (Ck + Cv) x moved entries; four copy
    kernels per object and one length update.
    """
    c, size = s.config, element_size(dtype)
    if not s.at_capacity:
        return OpCost("evict", "kernels (update)", 0.0, launches=0)
    excess = s.long_term + s.novel - s.long_term_capacity
    moved = s.long_term - s.pixels - excess
    return OpCost(
        "evict (at capacity)",
        "kernels (update)",
        float(4 * size * s.objects * (c.key_dim + c.value_dim) * moved),
        launches=4 * s.objects + 1,
    )


def update_costs(s: Scenario, dtype: str) -> list[OpCost]:
    """The kernels of one long-term memory update (eviction at capacity included)."""
    costs = [evict_cost(s, dtype), best_match_cost(s, dtype), select_novel_cost(s), append_cost(s, dtype)]
    return [cost for cost in costs if cost.launches]


def rsp_cost(s: Scenario, dtype: str) -> OpCost:
    """Reversed sub-pixel: O padded maps read once, own and others' unshuffled maps written once."""
    height, width = s.padded
    plane = s.objects * height * width
    return OpCost("rsp", "kernels", float(element_size(dtype) * 3 * plane), alu_ops=float(2 * plane))


def soft_aggregate_cost(s: Scenario) -> OpCost:
    """Odds normalisation: O float32 maps (cropped to the frame) in, O + 1 float32 maps out.

    Per class and pixel: a log, an exp and a reciprocal (SFU) and about eight FP32 instructions.
    """
    plane = s.height * s.width
    classes = s.objects + 1
    return OpCost(
        "soft_aggregate",
        "kernels",
        float(4 * (s.objects + classes) * plane),
        alu_ops=float(8 * classes * plane),
        sfu_ops=float(3 * classes * plane),
    )


def frame_variation_cost(s: Scenario) -> OpCost:
    """The PAM trigger's variation count (not in the official schedule): two float32 RGB frames and
    two sets of O float32 maps read, two counters written."""
    plane = s.height * s.width
    return OpCost(
        "frame_variation",
        "kernels (PAM only)",
        float(4 * plane * (6 + 2 * s.objects) + 8),
        alu_ops=float(plane * (8 + 4 * s.objects)),
    )


# -- the whole frame: convolutions and glue, traced on the meta device --------------------------


def conv2d_flops(input_shape: Sequence[int], weight_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """FLOPs of a 2-D convolution: 2 x B x Cout x Hout x Wout x (Cin / groups) x kh x kw.

    ``weight_shape`` is (Cout, Cin / groups, kh, kw), so the groups are already in it; a bias adds
    nothing here (FlopCounterMode does not count it either).
    """
    batch, out_channels, out_h, out_w = output_shape
    _, in_per_group, kh, kw = weight_shape
    del input_shape  # the output size already reflects stride, padding and dilation
    return 2 * batch * out_channels * out_h * out_w * in_per_group * kh * kw


def touched_bytes(tensor: Tensor) -> int:
    """Bytes of the distinct elements a tensor addresses (a broadcast dimension counts once)."""
    count = 1
    for size, stride in zip(tensor.shape, tensor.stride()):
        if stride != 0:
            count *= size
    return count * tensor.element_size()


#: ATen ops that launch no kernel (allocation only).
_NO_KERNEL = frozenset({"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "lift_fresh"})
#: ATen ops of a convolution (the mode may see the composite ``conv2d`` or ``convolution``).
_CONVOLUTIONS = frozenset({"conv2d", "convolution", "_convolution"})
#: ATen ops that only write their first argument (it is not read).
_WRITE_ONLY_FIRST = frozenset({"copy_", "fill_", "zero_"})


class _ModuleStack:
    """Names of the modules whose forward is running (pre/post hooks on every submodule)."""

    def __init__(self, model: nn.Module) -> None:
        self.names: list[str] = []
        self.region = "glue"
        self._handles = []
        for name, module in model.named_modules():
            if not name:
                continue
            self._handles.append(module.register_forward_pre_hook(functools.partial(self._enter, name)))
            self._handles.append(module.register_forward_hook(self._exit))

    # Hooks must return None (a forward hook's return value would replace the module's output).
    def _enter(self, name: str, module: nn.Module, args: tuple) -> None:
        self.names.append(name)

    def _exit(self, module: nn.Module, args: tuple, output: object) -> None:
        self.names.pop()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    @property
    def stage(self) -> str:
        return self.names[0].split(".")[0] if self.names else self.region

    @property
    def layer(self) -> str:
        return self.names[-1] if self.names else self.region

    @contextmanager
    def in_region(self, region: str) -> Iterator[None]:
        previous, self.region = self.region, region
        try:
            yield
        finally:
            self.region = previous


class _OpRecorder(TorchDispatchMode):
    """Records every ATen op that launches a kernel: bytes, and FLOPs for convolutions."""

    def __init__(self, modules: _ModuleStack, conv_matmul: str) -> None:
        super().__init__()
        self.modules = modules
        self.conv_matmul = conv_matmul
        self.costs: list[OpCost] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
        # An op that hands back one of its inputs (``to`` with nothing to change, eval-mode dropout,
        # ``contiguous`` on a contiguous tensor) launches nothing, unless it is an in-place op.
        returns_input = not name.endswith("_") and any(o is i for o in outputs for i in inputs)
        # A view op may also copy (``to`` another dtype, ``reshape`` of a strided tensor): then its
        # output is a fresh tensor, not a view.
        # (Storage identity, not ``_is_view()``, which inference mode leaves False.)
        storages = {i.untyped_storage()._cdata for i in inputs}
        views_only = func.is_view and all(o.untyped_storage()._cdata in storages for o in outputs)
        if views_only or name in _NO_KERNEL or returns_input:
            return out
        if name in _WRITE_ONLY_FIRST:
            inputs = inputs[1:]
        bytes_ = sum(touched_bytes(t) for t in inputs + outputs)
        if name in _CONVOLUTIONS:
            flops = conv2d_flops(args[0].shape, args[1].shape, out.shape)
            self.costs.append(
                OpCost(
                    self.modules.layer,
                    self.modules.stage,
                    float(bytes_),
                    tensor_flops=float(flops),
                    matmul=self.conv_matmul,
                    kind="conv",
                )
            )
        else:
            self.costs.append(OpCost(f"{self.modules.layer}: {name}", self.modules.stage, float(bytes_), kind="glue"))
        return out


def build_inference_model(variant: str, dtype: str) -> nn.Module:
    """The engine's inference copy of a SwiftNet (batch norms folded, mask convolutions paired,
    channels-last) on the ``meta`` device: shapes only, no memory."""
    from swiftcuda.model import SwiftNet
    from swiftcuda.optimize import PrepareOptions, prepare

    with torch.device("meta"):
        model = SwiftNet(variant).eval()
    return prepare(model, PrepareOptions(winograd=False, tune=False)).to(dtype=DTYPES[dtype])


def trace_step(model: nn.Module, s: Scenario, dtype: str) -> list[OpCost]:
    """Convolutions and glue ops of one steady-state step of the engine, traced on ``meta``.

    Mirrors :meth:`swiftcuda.inference.segmenter.Segmenter._graph_body` and the user loop's labels
    (``Segmenter.to_labels``), from a uint8 frame already on the device. The fused kernels are
    replaced by empty outputs of their shapes (their costs come from this module's formulas).

    Args:
        model: the inference copy (see :func:`build_inference_model`), on ``meta``.
    """
    from swiftcuda.model.swiftnet import foreground_probability

    config, padding = s.config, s.padding
    o, (h, w), p = s.objects, s.grid, s.pixels
    model_dtype = next(model.parameters()).dtype
    meta = {"device": "meta"}
    capacity = s.long_term_capacity
    mem_keys = torch.empty((o, config.key_dim, p + capacity), dtype=model_dtype, **meta)
    mem_values = torch.empty((o, config.value_dim, p + capacity), dtype=model_dtype, **meta)
    ids_table = torch.empty(o + 1, dtype=torch.int64, **meta)
    image = torch.empty((s.height, s.width, 3), dtype=torch.uint8, **meta)

    modules = _ModuleStack(model)
    recorder = _OpRecorder(modules, conv_matmul="tf32" if dtype == "fp32" else "half")
    try:
        with torch.inference_mode(), recorder:
            with modules.in_region("input"):  # image_to_tensor, then Segmenter.encode's padding
                frame = image.permute(2, 0, 1).to(torch.float32) / 255.0
                frame = padding.pad(frame[None])
            features = model.Encoder(frame)
            model.KV_Q_r4(features.r4)  # the query key and value (read by the memory_read kernel)
            # memory_read (kernel): (O, 2Cv, P)
            readout = torch.empty((o, 2 * config.value_dim, h, w), dtype=model_dtype, **meta)
            logits = model.Decoder(model.aspp(readout), features.r3, features.r2)
            with modules.in_region("probabilities"):
                object_probs = padding.crop(foreground_probability(logits))
            # soft_aggregate (kernel): (O + 1, H, W) float32
            probs = torch.empty((o + 1, s.height, s.width), dtype=torch.float32, **meta)
            with modules.in_region("memory glue"):  # Segmenter._memorize_current
                object_probs = padding.pad(probs[1:]).to(model_dtype)
                # rsp (kernel): own, others (O, 256, h, w)
                own_small = torch.empty((o, config.rsp_factor**2, h, w), dtype=model_dtype, **meta)
                others_small = torch.empty_like(own_small)
                if o == 1:
                    fused = model.LAE(features, object_probs[:, None], None, own_small, None)
                else:
                    others = F.pixel_shuffle(others_small, config.rsp_factor)
                    fused = model.LAE(features, object_probs[:, None], others, own_small, others_small)
                mem_key, mem_value = model.KV_M_r4(fused)
                mem_keys[:, :, :p] = mem_key.flatten(2)  # MemoryStore.set_previous
                mem_values[:, :, :p] = mem_value.flatten(2)
            with modules.in_region("output"):  # _replay's copy of the graph's output, to_labels
                probs = probs.clone()
                ids_table[probs.max(dim=0).indices]
    finally:
        modules.remove()
    return recorder.costs


def kernel_costs(s: Scenario, dtype: str, update: bool, gpu: GpuSpec = H100_SXM) -> list[OpCost]:
    """The fused kernels of one step (official schedule); ``update``: the long-term update runs."""
    costs = [memory_read_cost(s, dtype)]
    split = read_split_workspace_cost(s, read_splits(s, gpu))
    if split.launches:
        costs.append(split)
    costs += [soft_aggregate_cost(s), rsp_cost(s, dtype)]
    if update:
        costs += update_costs(s, dtype)
    return costs


# -- predictions -------------------------------------------------------------------------------


@dataclass
class FramePrediction:
    """One frame's predicted time on one GPU (a mean over frames when built by :func:`mean_frame`).

    Attributes:
        ops_s: sum of the ops' roofline times (one kernel at a time, nothing overlaps).
        launches: kernels launched (eager: one per ATen op that computes).
        fused_s, fused_launches: the same with every glue op fused away into the convolutions and
            kernels around it (the best a compiled step could do: a lower bound).
        bytes, flops: totals (FLOPs: tensor FLOPs + FP32-pipe instructions).
        by_stage: stage -> (roofline seconds, launches, bytes, FLOPs).
    """

    ops_s: float = 0.0
    launches: float = 0.0
    fused_s: float = 0.0
    fused_launches: float = 0.0
    bytes: float = 0.0
    flops: float = 0.0
    by_stage: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    def total_s(self, launch_us: float) -> float:
        """Roofline time plus ``launch_us`` per kernel launched."""
        return self.ops_s + self.launches * launch_us * 1e-6

    def fused_total_s(self, launch_us: float) -> float:
        return self.fused_s + self.fused_launches * launch_us * 1e-6


def predict(costs: Sequence[OpCost], gpu: GpuSpec) -> FramePrediction:
    """Add up the roofline times of ``costs`` on ``gpu``."""
    result = FramePrediction()
    for cost in costs:
        t = roofline(cost, gpu).time_s
        result.ops_s += t
        result.launches += cost.launches
        if cost.kind != "glue":
            result.fused_s += t
            result.fused_launches += cost.launches
        result.bytes += cost.bytes
        result.flops += cost.flops
        time_s, launches, bytes_, flops = result.by_stage.get(cost.stage, (0.0, 0, 0.0, 0.0))
        result.by_stage[cost.stage] = (time_s + t, launches + cost.launches, bytes_ + cost.bytes, flops + cost.flops)
    return result


def mean_frame(plain: FramePrediction, updating: FramePrediction, update_every: int) -> FramePrediction:
    """The mean frame of a schedule that updates the memory once every ``update_every`` frames."""
    w = 1.0 / update_every

    def mix(a: float, b: float) -> float:
        return (1 - w) * a + w * b

    stages = {
        stage: tuple(mix(a, b) for a, b in zip(plain.by_stage.get(stage, (0.0,) * 4), updating.by_stage[stage]))
        for stage in updating.by_stage
    }
    return FramePrediction(
        mix(plain.ops_s, updating.ops_s),
        mix(plain.launches, updating.launches),
        mix(plain.fused_s, updating.fused_s),
        mix(plain.fused_launches, updating.fused_launches),
        mix(plain.bytes, updating.bytes),
        mix(plain.flops, updating.flops),
        stages,
    )


def frame_ops(model: nn.Module, s: Scenario, dtype: str) -> tuple[list[OpCost], list[OpCost]]:
    """The ops of a frame without and with the long-term update.

    Returns:
        (plain frame, update frame). The official schedule's mean frame is one update frame in five.
    """
    traced = trace_step(model, s, dtype)
    return traced + kernel_costs(s, dtype, update=False), traced + kernel_costs(s, dtype, update=True)


# -- markdown ----------------------------------------------------------------------------------


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


_KERNEL_HEADER = (
    "variant",
    "dtype",
    "O",
    "memory",
    "N",
    "MB",
    "GFLOP",
    "exp M",
    "FLOP/B",
    "H100 mem µs",
    "H100 compute µs",
    "bound",
    "H100 µs",
    "H200 µs",
)


def kernel_row(s: Scenario, dtype: str, cost: OpCost, entries: int | str, memory: str | None = None) -> list[str]:
    """One row of a kernel table; ``memory`` overrides the scenario's memory label."""
    h100, h200 = roofline(cost, H100_SXM), roofline(cost, H200_SXM)
    intensity = f"{arithmetic_intensity(cost):.0f}" if cost.bytes else "-"
    return [
        s.variant,
        "fp32" if dtype == "fp32" else "fp16/bf16",
        str(s.objects),
        memory or s.memory_label,
        str(entries),
        f"{cost.bytes / 1e6:.3f}",
        f"{cost.tensor_flops / 1e9:.3f}",
        f"{cost.sfu_ops / 1e6:.2f}",
        intensity,
        _us(h100.memory_s),
        _us(h100.compute_s),
        h100.bound,
        _us(h100.time_s),
        _us(h200.time_s),
    ]


def kernel_tables(
    variants: Sequence[str], objects: Sequence[int], memories: Sequence[int], dtypes: Sequence[str]
) -> str:
    """One markdown table per kernel over every scenario."""
    sections: dict[str, list[list[str]]] = {}

    def add(title: str, s: Scenario, dtype: str, cost: OpCost, entries: int | str, memory: str | None = None) -> None:
        sections.setdefault(title, []).append(kernel_row(s, dtype, cost, entries, memory))

    for variant in variants:
        for o in objects:
            for dtype in dtypes:
                for frames in memories:
                    s = Scenario(variant, o, frames)
                    add("memory_read (fused, compulsory traffic)", s, dtype, memory_read_cost(s, dtype), s.read_entries)
                    add(
                        "best_match (update: similarity sweep over L)", s, dtype, best_match_cost(s, dtype), s.long_term
                    )
                s_cap = Scenario(variant, o, 0)
                add("append (update: k columns)", s_cap, dtype, append_cost(s_cap, dtype), s_cap.novel, "any")
                add("evict (update at capacity, host path)", s_cap, dtype, evict_cost(s_cap, dtype), s_cap.long_term)
            for frames in memories:
                s = Scenario(variant, o, frames)
                splits = read_splits(s)
                add(
                    "memory_read split workspace (not compulsory: the Triton launcher of commit 49b3ec3, BLOCK_P 64, "
                    "BLOCK_V 128, two programs per SM, >= 512 entries a split)",
                    s,
                    "fp32",
                    read_split_workspace_cost(s, splits),
                    f"{s.read_entries} (S={splits})",
                )
    for o in objects:
        s = Scenario(variants[0], o, 0)
        add("select_novel (update; one block per object: latency-bound)", s, "fp32", select_novel_cost(s), "-", "any")
        add("soft_aggregate (float32 in and out)", s, "fp32", soft_aggregate_cost(s), "-", "-")
        add("frame_variation (PAM trigger only)", s, "fp32", frame_variation_cost(s), "-", "-")
        for dtype in dtypes:
            add("rsp (bytes only)", s, dtype, rsp_cost(s, dtype), "-", "-")
    out = []
    for title, rows in sections.items():
        if title.startswith(("select_novel", "soft_aggregate", "frame_variation", "rsp")):
            rows = [["-", *row[1:]] for row in rows]  # independent of the variant
        out.append(f"#### {title}\n\n" + _table(_KERNEL_HEADER, rows))
    return "\n\n".join(out)


def frame_summary(
    variants: Sequence[str],
    objects: Sequence[int],
    memories: Sequence[int],
    dtype: str = "fp16",
    launch_us: float = DEFAULT_LAUNCH_US,
    update_every: int = 5,
) -> tuple[str, str, str]:
    """The per-frame tables (mean frame of the official schedule).

    Returns:
        (summary table, per-stage breakdown tables, slowest convolutions), markdown.
    """
    target_s = 1.0 / TARGET_FPS
    summary: list[list[str]] = []
    stages: list[str] = []
    layers: list[str] = []
    for variant in variants:
        model = build_inference_model(variant, dtype)
        for o in objects:
            traced = trace_step(model, Scenario(variant, o, 1), dtype)  # independent of the memory's size
            for frames in memories:
                s = Scenario(variant, o, frames)
                plain_ops = traced + kernel_costs(s, dtype, update=False)
                update_ops = traced + kernel_costs(s, dtype, update=True)
                h100, h200 = (
                    mean_frame(predict(plain_ops, gpu), predict(update_ops, gpu), update_every) for gpu in GPUS
                )
                update_h100 = predict(update_ops, H100_SXM)
                summary.append(
                    [
                        variant,
                        str(o),
                        s.memory_label,
                        str(s.read_entries),
                        f"{h100.launches:.0f} / {h100.fused_launches:.0f}",
                        f"{h100.bytes / 1e6:.0f}",
                        f"{h100.flops / 1e9:.0f}",
                        _us(h100.ops_s),
                        _us(update_h100.ops_s),
                        _us(h100.total_s(launch_us)),
                        f"{1 / h100.total_s(launch_us):.0f}",
                        f"{100 * h100.total_s(launch_us) / target_s:.0f}%",
                        _us(h100.fused_s),
                        _us(h100.fused_total_s(launch_us)),
                        f"{1 / h100.fused_total_s(launch_us):.0f}",
                        _us(h200.ops_s),
                        _us(h200.total_s(launch_us)),
                        f"{1 / h200.total_s(launch_us):.0f}",
                        f"{1 / h200.fused_total_s(launch_us):.0f}",
                    ]
                )
                if frames != memories[-1]:
                    continue
                by_time = sorted(h100.by_stage.items(), key=lambda item: -item[1][0])
                body = [
                    [
                        stage,
                        f"{launches:.1f}",
                        f"{bytes_ / 1e6:.1f}",
                        f"{flops / 1e9:.2f}",
                        _us(t),
                        f"{100 * t / h100.ops_s:.0f}%",
                    ]
                    for stage, (t, launches, bytes_, flops) in by_time
                ]
                body.append(
                    [
                        "total",
                        f"{h100.launches:.1f}",
                        f"{h100.bytes / 1e6:.1f}",
                        f"{h100.flops / 1e9:.2f}",
                        _us(h100.ops_s),
                        "100%",
                    ]
                )
                plural = "s" if o > 1 else ""
                stages.append(
                    f"##### {variant}, {o} object{plural}, memory {s.memory_label} (N = {s.read_entries}), "
                    f"mean frame, H100 SXM\n\n"
                    + _table(("stage", "launches", "MB", "GFLOP", "roofline µs", "share"), body)
                )
                convs = sorted((c for c in traced if c.kind == "conv"), key=lambda c: -roofline(c, H100_SXM).time_s)
                top = [
                    [
                        c.stage,
                        c.name,
                        f"{c.bytes / 1e6:.2f}",
                        f"{c.tensor_flops / 1e9:.2f}",
                        f"{arithmetic_intensity(c):.0f}",
                        roofline(c, H100_SXM).bound,
                        _us(roofline(c, H100_SXM).time_s),
                    ]
                    for c in convs[:6]
                ]
                layers.append(
                    f"##### {variant}, {o} object{plural} (H100 SXM)\n\n"
                    + _table(("stage", "layer", "MB (in+w+out)", "GFLOP", "FLOP/B", "bound", "µs"), top)
                )
    header = (
        "variant",
        "O",
        "memory",
        "N",
        "launches eager / fused",
        "MB",
        "GFLOP",
        "H100 µs",
        "H100 update-frame µs",
        "H100 µs + launches",
        "H100 FPS",
        "of 667 µs",
        "H100 fused µs",
        "H100 fused µs + launches",
        "H100 fused FPS",
        "H200 µs",
        "H200 µs + launches",
        "H200 FPS",
        "H200 fused FPS",
    )
    return _table(header, summary), "\n\n".join(stages), "\n\n".join(layers)


def assumption_notes(launch_us: float) -> str:
    """What the tables assume, as a markdown list (printed under them)."""
    return "\n".join(
        [
            "- Peaks (dense): H100 SXM 3.35 TB/s, H200 SXM 4.8 TB/s; both FP16/BF16 tensor 989 TFLOP/s, TF32 494, "
            "FP32 67 (33.5 T instructions/s), special functions 3.9 T/s (NVIDIA H100 and H200 datasheets; "
            "FlashAttention-3 paper for the SFU rate).",
            "- time = max(bytes / bandwidth, tensor FLOPs / tensor peak, FP32 instructions / 33.5 T/s, "
            "exp / 3.9 T/s): pipes overlap inside a kernel, kernels do not overlap each other.",
            "- Bytes: compulsory (each input read once, each output written once) in the engine's dtypes; "
            "the query key/value are read once for all objects (broadcast). Convolutions: input + weight + "
            "bias + output. Glue: every other ATen op of the eager step, inputs + outputs.",
            "- float32 kernels: the fused kernels' float32 dots are IEEE (the FP32 pipe), convolutions "
            "TF32 (cuDNN's default); fp16 and bf16 have the same figures.",
            f"- Launch overhead: {launch_us} µs per kernel, an assumption to be measured (CUDA graph replay is "
            "commonly quoted at 2-3 µs per kernel node, about 1 µs at best). 'fused' drops every glue op and its "
            "launch (what a step compiled into convolution epilogues could reach).",
            "- Not modelled: wave quantisation (a 1/16 map is 1,620 pixels: a 1/16 convolution with 256 output "
            "channels is 26 tiles of 128x128 for 132 SMs), cuDNN's efficiency, the host-device copies (a uint8 "
            "480x854 frame is 1.2 MB, int64 labels 3.3 MB: 19 and 51 µs at PCIe Gen5's 64 GB/s each way, "
            "overlapped with compute by the copy engines when pipelined), the trigger (official: host only).",
            "- Mean frame: one long-term update every 5 frames; the update-frame column is the worst frame.",
        ]
    )


def conv_layer_table(variant: str, objects: int, dtype: str = "fp16") -> str:
    """Every convolution of a step: shapes' bytes (inputs + weights + outputs) and FLOPs."""
    model = build_inference_model(variant, dtype)
    s = Scenario(variant, objects, 1)
    rows = []
    for c in trace_step(model, s, dtype):
        if c.kind != "conv":
            continue
        r = roofline(c, H100_SXM)
        rows.append(
            [
                c.stage,
                c.name,
                f"{c.bytes / 1e6:.2f}",
                f"{c.tensor_flops / 1e9:.3f}",
                f"{arithmetic_intensity(c):.0f}",
                r.bound,
                _us(r.time_s),
            ]
        )
    return _table(("stage", "layer", "MB (in+w+out)", "GFLOP", "FLOP/B", "bound", "H100 µs"), rows)


# -- the STM family's read (XMem, Cutie, STCN): top-k l2 reads ---------------------------------


@dataclass(frozen=True)
class FamilyRead:
    """One STM-family model's memory read at 480p (P = 1620 query pixels at 1/16).

    Attributes:
        name: how tables name it.
        key_dim, value_dim: Ck and Cv.
        top_k: the softmax keeps each query's top_k logits.
        selection: l2 with a per-pixel selection and a per-entry shrinkage (else plain l2).
        usage: the read also returns each entry's usage.
        q_val: the query value is appended to the readout (STCN).
        entries: the memory lengths N the tables show.
    """

    name: str
    key_dim: int
    value_dim: int
    top_k: int
    selection: bool
    usage: bool
    q_val: bool
    entries: tuple[int, ...]


#: XMem: working plus long-term memory from about 10k to 26k entries; Cutie: up to 8,100; STCN:
#: a frame (1620 entries) per memory frame.
FAMILY_READS: dict[str, FamilyRead] = {
    "xmem": FamilyRead("XMem", 64, 512, 30, True, True, False, (10_000, 26_000)),
    "cutie": FamilyRead("Cutie", 64, 256, 30, True, True, False, (8_100,)),
    "stcn": FamilyRead("STCN", 64, 512, 20, False, False, True, (3_240, 16_200)),
}
FAMILY_PIXELS = 1620
#: FP32-pipe instructions per (query, entry) pair of the top-k sweep: scale (and shrinkage), the
#: packing of the (logit, entry) key and the comparison with the query's k-th best (an assumption:
#: a tile with no candidate costs nothing more; insertions are rare after the first tiles).
TOPK_ALU_PER_PAIR = 6
#: Bytes a gathered element costs when its value column is scattered: one 32-byte sector (values
#: are channel-major, (Cv, N): the k chosen entries of a query are k scattered columns).
GATHER_SECTOR_BYTES = 32


def family_products(read: FamilyRead) -> int:
    """Tensor-core products of the logits per (query, entry, key channel) pair, counted as in the
    Triton sweep: one for dot / plain l2; with a selection the keys and the squared keys, each in
    two exact parts (high + low) in 16-bit."""
    return 4 if read.selection else 1


def family_sweep_cost(read: FamilyRead, entries: int, dtype: str, pixels: int = FAMILY_PIXELS) -> OpCost:
    """The top-k sweep over N entries, once for every object of a group (the keys, queries,
    selection and shrinkage are shared; only the values are per object).

    Compulsory bytes: the keys (Ck x N), the query keys and selection (Ck x P each), the shrinkage
    (N). FLOPs: 2 Ck N P per product (:func:`family_products`; float32: FMAs on the FP32 pipe, one
    product less per pair: no split). ALU: :data:`TOPK_ALU_PER_PAIR` per pair.
    """
    size = element_size(dtype)
    c, n, p = read.key_dim, entries, pixels
    query_maps = 2 if read.selection else 1
    bytes_ = size * (c * n + query_maps * c * p + (n if read.selection else 0))
    products = family_products(read) if dtype != "fp32" else (2 if read.selection else 1)
    return OpCost(
        f"{read.name} top-k sweep",
        "kernels",
        float(bytes_),
        tensor_flops=2.0 * products * c * n * p,
        alu_ops=float(TOPK_ALU_PER_PAIR * n * p),
        matmul=_matmul(dtype),
    )


def family_gather_cost(
    read: FamilyRead, entries: int, objects: int, dtype: str, pixels: int = FAMILY_PIXELS, sectors: bool = False
) -> OpCost:
    """Softmax over the k chosen logits, the readout of the k chosen value columns, the usage.

    Compulsory bytes: the distinct value columns the queries can choose, at most min(N, P k) of
    them, per object (Cv each), the output (Cv x P, twice with the query value appended, which is
    read too), the usage (N float32 per object). With ``sectors``: every gathered element as one
    32-byte sector instead of the distinct columns (the traffic of a scattered gather that no
    cache serves; between the two, what the L2 keeps). FLOPs: k Cv P multiply-adds per object
    (FP32 pipe), k P exponentials.
    """
    size = element_size(dtype)
    o, cv, n, p, k = objects, read.value_dim, entries, pixels, read.top_k
    values = o * cv * k * p * GATHER_SECTOR_BYTES if sectors else size * o * cv * min(n, p * k)
    output = size * o * cv * p * (3 if read.q_val else 1)
    bytes_ = values + output + (4 * o * n if read.usage else 0)
    name = f"{read.name} gather" + (" (scattered sectors)" if sectors else "")
    return OpCost(
        name, "kernels", float(bytes_), alu_ops=float(o * cv * k * p), sfu_ops=float(o * k * p), matmul=_matmul(dtype)
    )


def family_full_cost(read: FamilyRead, entries: int, objects: int, dtype: str, pixels: int = FAMILY_PIXELS) -> OpCost:
    """For comparison: the same read with the full softmax (every entry's value read by the fused
    online softmax, as SwiftNet's read): keys and values once, 2 (products Ck + Cv) N P FLOPs."""
    size = element_size(dtype)
    o, c, cv, n, p = objects, read.key_dim, read.value_dim, entries, pixels
    products = 2 if read.selection else 1
    bytes_ = size * (c * n + o * cv * n + (2 if read.selection else 1) * c * p + o * cv * p)
    return OpCost(
        f"{read.name} full softmax",
        "kernels",
        float(bytes_),
        tensor_flops=2.0 * (products * c * o + cv * o) * n * p,
        alu_ops=float(READ_ALU_PER_PAIR * o * n * p),
        sfu_ops=float(o * n * p),
        matmul=_matmul(dtype),
    )


_FAMILY_HEADER = (
    "model",
    "kernel",
    "dtype",
    "O",
    "N",
    "MB",
    "GFLOP",
    "FLOP/B",
    "H100 mem µs",
    "H100 compute µs",
    "bound",
    "H100 µs",
    "H200 µs",
)


def family_tables(objects: Sequence[int] = (1, 5), dtypes: Sequence[str] = ("fp16", "fp32")) -> str:
    """The family's reads per model shape: the top-k sweep, the gather (compulsory and scattered
    sectors), their sum, and the full softmax for comparison, on an H100 SXM and an H200 SXM."""
    rows = []
    for read in FAMILY_READS.values():
        for n in read.entries:
            for o in objects:
                for dtype in dtypes:
                    sweep = family_sweep_cost(read, n, dtype)
                    gather = family_gather_cost(read, n, o, dtype)
                    scattered = family_gather_cost(read, n, o, dtype, sectors=True)
                    total = [sweep, gather]
                    for cost in (sweep, gather, scattered, family_full_cost(read, n, o, dtype)):
                        rows.append(_family_row(read, cost, cost.name.removeprefix(read.name + " "), dtype, o, n))
                    rows.append(
                        [
                            read.name,
                            "top-k read (sweep + gather)",
                            "fp32" if dtype == "fp32" else "fp16/bf16",
                            str(o),
                            str(n),
                            f"{sum(c.bytes for c in total) / 1e6:.2f}",
                            f"{sum(c.tensor_flops for c in total) / 1e9:.2f}",
                            "-",
                            "-",
                            "-",
                            "-",
                            _us(sum(roofline(c, H100_SXM).time_s for c in total)),
                            _us(sum(roofline(c, H200_SXM).time_s for c in total)),
                        ]
                    )
    return _table(_FAMILY_HEADER, rows)


def _family_row(read: FamilyRead, cost: OpCost, kernel: str, dtype: str, objects: int, entries: int) -> list[str]:
    h100, h200 = roofline(cost, H100_SXM), roofline(cost, H200_SXM)
    intensity = f"{arithmetic_intensity(cost):.0f}" if cost.bytes else "-"
    return [
        read.name,
        kernel,
        "fp32" if dtype == "fp32" else "fp16/bf16",
        str(objects),
        str(entries),
        f"{cost.bytes / 1e6:.2f}",
        f"{cost.tensor_flops / 1e9:.2f}",
        intensity,
        _us(h100.memory_s),
        _us(h100.compute_s),
        h100.bound,
        _us(h100.time_s),
        _us(h200.time_s),
    ]
