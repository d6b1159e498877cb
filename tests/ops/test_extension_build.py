"""The compiled extension: its ops are registered, and its CUDA kernels are in the binary.

In CI (a CUDA toolkit at CUDA_HOME, no GPU) this checks that the CUDA kernels compiled AND linked
for sm_80 and sm_90: the extension loads (an unresolved symbol would fail the import) and the
shared library carries machine code for both architectures.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from swiftcuda.ops import extension

OPS = ("memory_read", "memory_update", "memory_update_", "rsp", "build_info")


def cuda_toolkit() -> str | None:
    """The CUDA toolkit the build would use (setup.py asks torch the same way)."""
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME


def test_extension_loads_and_registers_its_ops():
    status = extension.status()
    assert status.loaded, f"swiftcuda._C did not load: {status.error}"
    for name in OPS:
        assert hasattr(torch.ops.swiftcuda, name), f"torch.ops.swiftcuda.{name} is missing"
    assert status.openmp, "the CPU kernels were built without OpenMP"
    major_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    assert status.torch_version.startswith(major_minor), "built against another torch than the one running"


@pytest.mark.skipif(cuda_toolkit() is None, reason="no CUDA toolkit: the extension is built without CUDA kernels")
def test_cuda_kernels_compiled_for_sm80_and_sm90():
    status = extension.status()
    assert status.loaded, f"swiftcuda._C did not load: {status.error}"
    assert status.cuda, "a CUDA toolkit is present but the extension was built without CUDA kernels"
    assert {80, 90} <= set(status.cuda_archs), f"compiled for sm_{status.cuda_archs}"
    for op in ("memory_read", "memory_update", "memory_update_", "rsp"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"swiftcuda::{op}", "CUDA"), f"no CUDA kernel for {op}"


def embedded_cuda_code(library: str) -> list[tuple[str, int, bytes]]:
    """(kind, architecture, image) of every image in the library's CUDA fat binaries.

    A fat binary starts with the magic 0xBA55ED50, a 16-bit version, a 16-bit header size and a
    64-bit payload size; each entry then has a 16-bit kind (1 PTX, 2 ELF machine code), a 32-bit
    header size, a 64-bit image size and, at byte 28, the 32-bit architecture (80 for sm_80).
    Reading it here keeps the check free of cuobjdump, which minimal toolkits do not ship.
    """
    data = Path(library).read_bytes()
    magic = struct.pack("<I", 0xBA55ED50)
    images = []
    start = data.find(magic)
    while start != -1:
        header_size, payload = struct.unpack_from("<HQ", data, start + 6)
        entry, end = start + header_size, start + header_size + payload
        while entry < end:
            kind, entry_header, size = struct.unpack_from("<H2xIQ", data, entry)
            (arch,) = struct.unpack_from("<I", data, entry + 28)
            body = data[entry + entry_header : entry + entry_header + size]
            images.append(({1: "ptx", 2: "elf"}.get(kind, str(kind)), arch, body))
            entry += entry_header + size
        start = data.find(magic, end)
    return images


@pytest.mark.skipif(cuda_toolkit() is None, reason="no CUDA toolkit")
def test_binary_holds_machine_code_for_sm80_and_sm90():
    library = extension.status().path
    images = embedded_cuda_code(library)
    machine = {arch for kind, arch, _ in images if kind == "elf"}
    assert {80, 90} <= machine, f"machine code for sm_{sorted(machine)} only"
    # Every kernel of every op is in the machine code of both architectures.
    kernels = (
        "read_mma_kernel",
        "read_simt_kernel",
        "read_combine_kernel",
        "best_match_kernel",
        "select_append_kernel",
        "fill_kernel",
        "rsp_kernel",
    )
    for arch in (80, 90):
        code = b"".join(body for kind, a, body in images if kind == "elf" and a == arch)
        missing = [k for k in kernels if k.encode() not in code]
        assert not missing, f"sm_{arch} code lacks {missing}"
