"""What this CPU does fast: its model, ISA level and native bfloat16, as PyTorch sees them.

The machines swiftcuda runs on differ: an AMD Zen 4 has AVX-512 with BF16 instructions, an Intel
Sapphire Rapids adds AMX tiles, an older EPYC or a laptop has AVX2 only. On a CPU without
AVX512-BF16 or AMX, oneDNN has no bfloat16 convolution and PyTorch falls back to a slow reference
loop for every layer (several times slower than float32), so the engine asks this module before
it picks a precision (:mod:`swiftcuda.precision`), and every benchmark table prints
:func:`describe` so that a number is never read without the machine it came from.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

import torch

__all__ = ["CpuInfo", "cpu_info", "cpu_model_name", "describe"]


#: oneDNN's ISA levels, oldest first (the values ``ONEDNN_MAX_CPU_ISA`` takes).
ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX10_1_512",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512_AMX_FP16",
)


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    """This CPU's instruction sets as PyTorch's own detection reports them."""

    model: str  #: marketing name, e.g. "AMD EPYC 9654 96-Core Processor"
    capability: str  #: the kernels ATen dispatches to: "AVX512", "AVX2", "DEFAULT", ...
    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx: bool  #: AMX tiles with bfloat16 (Intel Sapphire Rapids and later)
    amx_fp16: bool  #: AMX with float16 (Intel Granite Rapids and later)
    onednn: bool  #: oneDNN (mkldnn) is built into this torch
    #: ``ONEDNN_MAX_CPU_ISA`` when set (oneDNN then ignores newer instructions), else None.
    onednn_isa_limit: str | None = None

    def _onednn_allows(self, isa: str) -> bool:
        limit = (self.onednn_isa_limit or "").upper()
        if limit in ("", "ALL", "DEFAULT") or limit not in ONEDNN_ISAS:
            return True
        return ONEDNN_ISAS.index(limit) >= ONEDNN_ISAS.index(isa)

    @property
    def native_bf16(self) -> bool:
        """Whether bfloat16 convolutions and matmuls run on bfloat16 instructions (AVX512-BF16 or AMX
        through oneDNN), rather than on PyTorch's slow fallback loops."""
        return self.onednn and (
            (self.avx512_bf16 and self._onednn_allows("AVX512_CORE_BF16"))
            or (self.amx and self._onednn_allows("AVX512_CORE_AMX"))
        )

    @property
    def native_fp16(self) -> bool:
        """Whether float16 convolutions run on float16 instructions (AMX-FP16 through oneDNN)."""
        return self.onednn and self.amx_fp16 and self._onednn_allows("AVX512_CORE_AMX_FP16")

    @property
    def isa(self) -> str:
        """Short ISA summary, e.g. "AVX-512 + BF16 + AMX" or "AVX2"."""
        if self.avx512:
            level = "AVX-512"
        elif self.avx2:
            level = "AVX2"
        else:
            level = self.capability or platform.machine()
        extras = [
            name
            for name, present in (("BF16", self.avx512_bf16), ("AMX", self.amx), ("AMX-FP16", self.amx_fp16))
            if present
        ]
        summary = " + ".join([level, *extras])
        return summary if self.onednn_isa_limit is None else f"{summary}, oneDNN limited to {self.onednn_isa_limit}"


def _cpu_flag(name: str) -> bool:
    """``torch.cpu._is_<name>_supported()``, or False where this torch lacks the query."""
    query = getattr(torch.cpu, f"_is_{name}_supported", None)
    return bool(query()) if query is not None else False


def cpu_model_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; elsewhere what :mod:`platform` says)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_info() -> CpuInfo:
    """What this CPU supports, read from PyTorch's CPU feature detection (cpuinfo)."""
    return CpuInfo(
        model=cpu_model_name(),
        capability=torch.backends.cpu.get_cpu_capability(),
        avx2=_cpu_flag("avx2"),
        avx512=_cpu_flag("avx512"),
        avx512_bf16=_cpu_flag("avx512_bf16"),
        amx=_cpu_flag("amx_tile"),
        amx_fp16=_cpu_flag("amx_fp16"),
        onednn=torch.backends.mkldnn.is_available(),
        onednn_isa_limit=os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"),
    )


def describe(info: CpuInfo | None = None, threads: int | None = None) -> str:
    """One line for a benchmark table's header, e.g.
    "CPU: AMD EPYC 7B13, AVX2 (ATen AVX2), native bfloat16: no, 2 threads"."""
    info = cpu_info() if info is None else info
    threads = torch.get_num_threads() if threads is None else threads
    return (
        f"CPU: {info.model}, {info.isa} (ATen {info.capability}), "
        f"native bfloat16: {'yes' if info.native_bf16 else 'no'}, {threads} threads"
    )
