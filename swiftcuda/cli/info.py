"""``swiftcuda info``: versions, the op backends this machine can run, and the compiled extension."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from typing import Any

import torch

from swiftcuda import __version__
from swiftcuda.cpu import cpu_info
from swiftcuda.ops import backends, extension
from swiftcuda.precision import auto_dtype, dtype_name

DEVICE_TYPES = ("cpu", "cuda")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show versions, available op backends and the compiled kernels",
        description=(
            "Print the versions of swiftcuda, torch, CUDA, triton and Python; the op backends "
            "available on this machine per device; whether the C++/CUDA extension loaded, and if "
            "not why; and for which GPU architectures its CUDA kernels were compiled."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--weights",
        metavar="CKPT",
        default=None,
        help="also describe a checkpoint ('demo' for the shipped weights): variant and recommended internal size",
    )
    parser.add_argument(
        "--require",
        choices=REQUIREMENTS,
        default=None,
        help=(
            "exit with status 1 and one line on stderr unless the compiled extension loaded "
            "('extension'), loaded with its CUDA kernels ('cuda': a check of the build, which passes "
            "on a machine without a GPU), or loaded with them and a CUDA GPU is visible ('gpu'); for "
            "scripts such as scripts/gpu_suite.sh"
        ),
    )
    parser.set_defaults(run=run)


#: What ``--require`` can insist on: the extension, its CUDA kernels (the build), or those and a GPU.
REQUIREMENTS = ("extension", "cuda", "gpu")


def missing_requirement(info: dict[str, Any], requirement: str) -> str | None:
    """Why ``info`` does not meet ``requirement`` (one of :data:`REQUIREMENTS`), or None when it does."""
    extension = info["extension"]
    if not extension["loaded"]:
        return f"the compiled extension swiftcuda._C is not loaded: {extension['error']}"
    if requirement in ("cuda", "gpu") and not extension["cuda_kernels"]:
        return "the compiled extension has no CUDA kernels (built without a CUDA toolkit, or with SWIFTCUDA_CUDA=0)"
    if requirement == "gpu" and info["gpu"] is None:
        return "no CUDA GPU is visible here (the extension has its CUDA kernels, but nothing to run them on)"
    return None


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def collect() -> dict[str, Any]:
    """Everything ``swiftcuda info`` reports, as plain data."""
    gpu = None
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        gpu = {
            "name": torch.cuda.get_device_name(),
            "capability": f"sm_{major}{minor}",
            "count": torch.cuda.device_count(),
        }
    devices: dict[str, Any] = {}
    for device_type in DEVICE_TYPES:
        devices[device_type] = {
            "present": device_type == "cpu" or gpu is not None,
            "available": backends.available_backends(device_type),
            # Backends made for this device that cannot run here, and why.
            "unavailable": {
                name: reason
                for name, backend in backends.BACKENDS.items()
                if device_type in backend.devices
                and (reason := backends.unavailable_reason(name, device_type)) is not None
            },
        }
    found = extension.status()
    cpu = cpu_info()
    auto = {"cpu": dtype_name(auto_dtype(torch.device("cpu"), cpu))}
    if gpu is not None:
        auto["cuda"] = dtype_name(auto_dtype(torch.device("cuda"), cpu))
    return {
        "versions": {
            "swiftcuda": __version__,
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "triton": _package_version("triton"),
            "python": platform.python_version(),
        },
        "gpu": gpu,
        "cpu_threads": torch.get_num_threads(),
        "cpu": {
            "model": cpu.model,
            "isa": cpu.isa,
            "aten_capability": cpu.capability,
            "native_bf16": cpu.native_bf16,
            "native_fp16": cpu.native_fp16,
        },
        "auto_precision": auto,
        "backends": devices,
        "extension": {
            "loaded": found.loaded,
            "error": found.error,
            "path": found.path,
            "cuda_kernels": found.cuda,
            "cuda_version": found.cuda_version,
            "cuda_archs": [f"sm_{a}" for a in found.cuda_archs],
            "ptx_archs": [f"compute_{a}" for a in found.ptx_archs],
            "built_against_torch": found.torch_version,
            "openmp": found.openmp,
            "winograd_conv3x3": found.winograd,
        },
    }


def format_text(info: dict[str, Any]) -> str:
    """The report as aligned text lines."""
    versions, extension = info["versions"], info["extension"]
    gpu, cpu = info["gpu"], info["cpu"]
    lines = [
        f"swiftcuda  {versions['swiftcuda']}",
        f"python     {versions['python']}",
        f"torch      {versions['torch']} (CUDA {versions['torch_cuda'] or 'none'})",
        f"triton     {versions['triton'] or 'not installed'}",
        "GPU        " + (f"{gpu['name']} ({gpu['capability']}) x{gpu['count']}" if gpu else "none visible"),
        f"CPU        {cpu['model']}, {cpu['isa']} (ATen {cpu['aten_capability']}), {info['cpu_threads']} threads",
        f"           native bfloat16: {'yes' if cpu['native_bf16'] else 'no'}, native float16: "
        f"{'yes' if cpu['native_fp16'] else 'no'}",
        "precision  auto picks " + ", ".join(f"{name} on {device}" for device, name in info["auto_precision"].items()),
        "",
        "backends",
    ]
    for device_type, entry in info["backends"].items():
        note = "" if entry["present"] else "   (no such device here)"
        lines.append(f"  {device_type:<5} {', '.join(entry['available']) or 'none'}{note}")
        for name, reason in entry["unavailable"].items():
            lines.append(f"        - {name}: {reason}")
    lines += ["", "extension (swiftcuda._C)"]
    if not extension["loaded"]:
        lines.append(f"  not loaded: {extension['error']}")
        lines.append(
            "  WARNING: NO COMPILED KERNELS: the ops run the Triton kernels (GPU) or the plain PyTorch reference (slow)"
        )
        return "\n".join(lines)
    lines.append(f"  loaded from {extension['path']}")
    lines.append(f"  built against torch {extension['built_against_torch']}")
    openmp = extension["openmp"]
    lines.append(f"  CPU kernels: {'OpenMP ' + str(openmp) if openmp else 'no OpenMP'}, {info['cpu_threads']} threads")
    lines.append(
        "  CPU 3x3 convolutions: "
        + (
            "Winograd (NNPACK), used for float32"
            if extension["winograd_conv3x3"]
            else "oneDNN (this torch has no NNPACK)"
        )
    )
    if extension["cuda_kernels"]:
        archs = ", ".join(extension["cuda_archs"] + extension["ptx_archs"])
        lines.append(
            f"  CUDA kernels: compiled with CUDA {extension['cuda_version']} for {archs}"
            + ("" if gpu else " (no GPU visible here to run them)")
        )
    else:
        lines.append(
            "  CUDA kernels: NOT COMPILED (no CUDA toolkit, or SWIFTCUDA_CUDA=0, when the extension was built)"
        )
    return "\n".join(lines)


def describe_weights(source: str) -> dict[str, Any]:
    """What ``--weights`` reports: the checkpoint's path, variant and recommended internal size.

    Raises:
        WeightsError: the checkpoint cannot be read.
    """
    from swiftcuda.weights import detect_variant, read_checkpoint_info, resolve_weights

    state_dict, internal_size = read_checkpoint_info(source)
    return {
        "path": str(resolve_weights(source)),
        "variant": detect_variant(state_dict),
        "tensors": len(state_dict),
        "recommended_internal_size": internal_size,
    }


def format_weights(weights: dict[str, Any]) -> str:
    variant = f"SwiftNet-{weights['variant'].upper()}" if weights["variant"] else "variant not recognised"
    return "\n\n" + "\n".join(
        [
            f"weights    {weights['path']}",
            f"           {variant}, {weights['tensors']} tensors",
            f"           recommended internal size: {weights['recommended_internal_size']} (shorter side; "
            "what --internal-size auto runs at)",
        ]
    )


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.weights is not None:
        info["weights"] = describe_weights(args.weights)
    text = format_text(info) + (format_weights(info["weights"]) if args.weights is not None else "")
    print(json.dumps(info, indent=2) if args.json else text)
    if args.require is not None:
        reason = missing_requirement(info, args.require)
        if reason is not None:
            print(f"swiftcuda info: {reason}", file=sys.stderr)
            return 1
        if args.require == "cuda" and info["gpu"] is None:
            print(
                "swiftcuda info: the extension has its CUDA kernels, but no GPU is visible here "
                "(--require cuda checks the build; --require gpu also checks for a GPU)",
                file=sys.stderr,
            )
    return 0
