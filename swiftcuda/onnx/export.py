"""Exporting the per-frame step to ONNX: four graphs, checked, and a JSON sidecar that describes them.

The graphs are traced with ``torch.export`` (``torch.onnx.export(dynamo=True)``, which needs
``onnxscript``) from a copy of the model prepared for inference with standard layers only, with
the frame size (multiples of 16), the object count and the long-term capacity left dynamic. Each
file is checked with ``onnx.checker`` before the folder is moved into place, so a folder that exists
is complete.

Folder layout: ``encode_query.onnx``, ``read_and_decode.onnx``, ``encode_memory.onnx``,
``update_memory.onnx`` and :data:`SIDECAR` (inputs, outputs, the state layout and the step's
protocol).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.export import Dim

from swiftcuda._version import __version__
from swiftcuda.errors import InputError
from swiftcuda.inference.memory import default_capacity
from swiftcuda.io.output import staged_directory
from swiftcuda.model import SwiftNet
from swiftcuda.onnx.dependencies import require_onnx
from swiftcuda.onnx.graphs import (
    GRAPH_NAMES,
    MemoryEncoderGraph,
    MemoryUpdateGraph,
    QueryEncoderGraph,
    ReadDecodeGraph,
)
from swiftcuda.optimize import PrepareOptions, prepare
from swiftcuda.precision import dtype_name

logger = logging.getLogger(__name__)

#: The sidecar's file name inside an export folder.
SIDECAR = "swiftcuda-onnx.json"
#: Its format version: a runner refuses a sidecar of another version.
FORMAT_VERSION = 2
#: Precisions an export may have (ONNX Runtime has no bfloat16 convolutions).
EXPORT_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}

#: Symbolic dimensions: O objects, (h, w) the 1/16 memory grid (frames are 16h x 16w), N entries.
_OBJECTS, _GRID_H, _GRID_W, _ENTRIES = Dim("O", min=1), Dim("h", min=1), Dim("w", min=1), Dim("N", min=2)

_STATE = {
    "previous_keys": ("O", "Ck", "h", "w"),
    "previous_values": ("O", "Cv", "h", "w"),
    "long_term_keys": ("O", "Ck", "N"),
    "long_term_values": ("O", "Cv", "N"),
    "long_term_length": ("O",),
    "first_length": ("O",),
}
_STATE_MEANING = {
    "previous_keys": "the previous frame's memory keys, read in full (encode_memory's keys)",
    "previous_values": "the previous frame's memory values (encode_memory's values)",
    "long_term_keys": "long-term keys per object; entries [0, long_term_length[o]) valid, its given frames first",
    "long_term_values": "long-term values per object, same entries",
    "long_term_length": "valid long-term entries per object (int64)",
    "first_length": "entries of each object's given frames (a prefix of its long-term memory), never evicted (int64)",
}

#: How a runner carries out one step with the four graphs (what OnnxSegmenter does).
PROTOCOL = [
    "Pad the frame (float32 RGB in [0, 1], 1x3xHxW) with zeros to multiples of 16, the smaller half "
    "of each side's padding before (top / left); run encode_query on it.",
    "From the second frame on: run read_and_decode with the query and the state; crop its probs "
    "(background first, then the objects) back to the frame.",
    "Then let the previous frame into the long-term memory by update_memory (skip the call when no "
    "object updates): in_full for the objects whose mask was given at the previous frame, novel for "
    "the others when the previous frame was chosen (the official schedule chooses frames 0, n, 2n, ...; "
    "novel_count = P - int(P * (1 - beta)) for P = h * w, computed in float64 as Python does); update "
    "the state from its outputs. Before an in_full update, check that first_length + 2 P fits in N "
    "(the given frames must leave room for one more frame): otherwise stop, the memory is too small.",
    "When a mask is given: new objects get zero rows in every state tensor (lengths 0); pixels the mask "
    "labels take probability 1 for their object and 0 for the others; the background is 1 minus the "
    "objects' sum, clamped at 0.",
    "Run encode_memory on the trunk features (r4, r3, r2, c1) and the object probabilities padded as "
    "the frame; its keys and values become previous_keys and previous_values.",
]


def _describe_values(values: list) -> list[dict]:
    """Name, element type and (symbolic) shape of ONNX graph inputs or outputs."""
    import onnx

    described = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name  # "float32", "int64", "bool"
        described.append({"name": value.name, "dtype": dtype, "shape": shape})
    return described


def _export_graph(module: nn.Module, args: tuple, names: tuple[list[str], list[str]], shapes: dict, path: Path) -> dict:
    """Export one graph to ``path``, check it, and describe its inputs and outputs."""
    import onnx

    input_names, output_names = names
    # The exporter prints its progress and warns about internals on every call: kept for -v.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as log:
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=shapes,
            dynamo=True,
            external_data=False,
        )
    logger.info("exported %s:\n%s", path.name, log.getvalue().strip())
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return {
        "file": path.name,
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": _describe_values(list(model.graph.input)),
        "outputs": _describe_values(list(model.graph.output)),
    }


def _example_inputs(model: SwiftNet, size: tuple[int, int], objects: int, capacity: int) -> dict[str, Tensor]:
    """Inputs of every graph at ``size`` (padded) with ``objects`` objects, for tracing."""
    config, dtype = model.config, next(model.parameters()).dtype
    height, width = size
    grid_h, grid_w = height // config.stride, width // config.stride
    generator = torch.Generator().manual_seed(0)
    frame = torch.rand((1, 3, height, width), generator=generator)
    with torch.no_grad():
        key, value, r4, r3, r2, c1 = QueryEncoderGraph(model).eval()(frame)
    grid = (objects, grid_h, grid_w)
    return {
        "frame": frame,
        "key": key,
        "value": value,
        "r4": r4,
        "r3": r3,
        "r2": r2,
        "c1": c1,
        "object_probs": torch.rand((objects, height, width), generator=generator),
        "previous_keys": torch.randn((grid[0], config.key_dim, *grid[1:]), generator=generator).to(dtype),
        "previous_values": torch.randn((grid[0], config.value_dim, *grid[1:]), generator=generator).to(dtype),
        "long_term_keys": torch.randn((objects, config.key_dim, capacity), generator=generator).to(dtype),
        "long_term_values": torch.randn((objects, config.value_dim, capacity), generator=generator).to(dtype),
        "long_term_length": torch.full((objects,), 2 * grid_h * grid_w, dtype=torch.int64),
        "first_length": torch.full((objects,), grid_h * grid_w, dtype=torch.int64),
        "in_full": torch.arange(objects) == 0,
        "novel": torch.arange(objects) != 0,
        "novel_count": torch.tensor(max(1, grid_h * grid_w // 10)),
    }


def _graph_specs(model: SwiftNet) -> dict[str, tuple[nn.Module, list[str], list[str], dict]]:
    """Per graph: module, input names, output names, dynamic shapes (by input name)."""
    h, w, o, n = _GRID_H, _GRID_W, _OBJECTS, _ENTRIES
    grid = {2: h, 3: w}
    state = {
        "previous_keys": {0: o, **grid},
        "previous_values": {0: o, **grid},
        "long_term_keys": {0: o, 2: n},
        "long_term_values": {0: o, 2: n},
        "long_term_length": {0: o},
        "first_length": {0: o},
    }
    features = {"r4": grid, "r3": {2: 2 * h, 3: 2 * w}, "r2": {2: 4 * h, 3: 4 * w}, "c1": {2: 8 * h, 3: 8 * w}}
    read_inputs = [
        "key",
        "value",
        "r3",
        "r2",
        "previous_keys",
        "previous_values",
        "long_term_keys",
        "long_term_values",
        "long_term_length",
    ]
    update_inputs = [
        "long_term_keys",
        "long_term_values",
        "long_term_length",
        "first_length",
        "previous_keys",
        "previous_values",
        "in_full",
        "novel",
        "novel_count",
    ]
    all_shapes = {
        "frame": {2: 16 * h, 3: 16 * w},
        "key": grid,
        "value": grid,
        **features,
        **state,
        "object_probs": {0: o, 1: 16 * h, 2: 16 * w},
        "in_full": {0: o},
        "novel": {0: o},
        "novel_count": {},
    }
    specs = {
        "encode_query": (QueryEncoderGraph(model), ["frame"], ["key", "value", "r4", "r3", "r2", "c1"]),
        "read_and_decode": (ReadDecodeGraph(model), read_inputs, ["probs"]),
        "encode_memory": (
            MemoryEncoderGraph(model),
            ["r4", "r3", "r2", "c1", "object_probs"],
            ["previous_keys_out", "previous_values_out"],
        ),
        "update_memory": (
            MemoryUpdateGraph(),
            update_inputs,
            ["long_term_keys_out", "long_term_values_out", "long_term_length_out", "first_length_out"],
        ),
    }
    return {
        name: (module, inputs, outputs, {i: all_shapes[i] for i in inputs})
        for name, (module, inputs, outputs) in specs.items()
    }


def check_export_options(
    size: tuple[int, int], objects: int, capacity: int | None, precision: str, stride: int = 16
) -> int:
    """Validate the options of :func:`export_onnx`; returns the capacity to use.

    Raises:
        InputError: a size that is not a positive multiple of the stride, an unknown precision, or a
            capacity too small to hold two frames.
    """
    height, width = size
    if height < stride or width < stride or height % stride or width % stride:
        raise InputError(
            f"--size {height}x{width} must be positive multiples of {stride} (e.g. 480x864): the graphs take padded frames"
        )
    if precision not in EXPORT_PRECISIONS:
        raise InputError(f"precision {precision!r} cannot be exported: use {' or '.join(EXPORT_PRECISIONS)}")
    if objects < 1:
        raise InputError(f"--objects must be at least 1, got {objects}")
    pixels = (height // stride) * (width // stride)
    capacity = default_capacity(pixels) if capacity is None else capacity
    if capacity < 2 * pixels:
        raise InputError(
            f"a capacity of {capacity} entries cannot hold two {height}x{width} frames ({pixels} memory pixels each): "
            f"use --capacity {2 * pixels} or more"
        )
    return capacity


def export_onnx(
    model: SwiftNet,
    out_dir: str | os.PathLike,
    *,
    size: tuple[int, int] = (480, 864),
    objects: int = 2,
    capacity: int | None = None,
    precision: str = "fp32",
    overwrite: bool = False,
    weights: str | None = None,
) -> Path:
    """Export ``model``'s per-frame step to four ONNX graphs and a sidecar in ``out_dir``.

    Args:
        model: a SwiftNet (any device and dtype; left unchanged). It is exported on the CPU.
        out_dir: the folder to create (all or nothing; an existing non-empty one needs ``overwrite``).
        size: (H, W) padded frame size of the traced example, multiples of 16; the graphs accept
            any multiple of 16.
        objects: object count of the traced example (the graphs accept any).
        capacity: long-term entries per object recorded as the state's capacity (None: the
            engine's default for ``size``); the graphs accept any capacity of at least two frames.
        precision: "fp32" or "fp16" (weights and memory state; frames and probabilities stay float32).
        weights: how to name the weights in the sidecar.

    Returns:
        The sidecar's path.

    Raises:
        InputError: bad options, or onnx / onnxscript is not installed.
    """
    require_onnx(export=True)
    capacity = check_export_options(size, objects, capacity, precision, model.config.stride)
    dtype = EXPORT_PRECISIONS[precision]
    # Standard layers only (no tuned, Winograd or oneDNN-fused convolutions), batch norms folded, in
    # float32 first (as the engine folds them) and then in the export's precision.
    plain = PrepareOptions(winograd=False, tune=False, pointwise=False, channels_last=False)
    prepared = prepare(model, plain).to(device="cpu", dtype=dtype)
    example = _example_inputs(prepared, size, objects, capacity)
    out_dir = Path(out_dir)
    graphs = {}
    with staged_directory(out_dir, overwrite=overwrite) as staging:
        for name, (module, inputs, outputs, shapes) in _graph_specs(prepared).items():
            args = tuple(example[i] for i in inputs)
            graphs[name] = _export_graph(module, args, (inputs, outputs), shapes, staging / f"{name}.onnx")
        sidecar = _sidecar(prepared, graphs, size, objects, capacity, precision, weights)
        sidecar["recommended_internal_size"] = getattr(model, "recommended_internal_size", None)
        (staging / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    return out_dir / SIDECAR


def _sidecar(
    model: SwiftNet,
    graphs: dict,
    size: tuple[int, int],
    objects: int,
    capacity: int,
    precision: str,
    weights: str | None,
) -> dict:
    config = model.config
    sizes = {"Ck": config.key_dim, "Cv": config.value_dim}
    state_dtype = dtype_name(EXPORT_PRECISIONS[precision])
    return {
        "format": "swiftcuda-onnx-step",
        "format_version": FORMAT_VERSION,
        "swiftcuda": __version__,
        "torch": torch.__version__,
        "weights": weights,
        "variant": config.variant,
        "precision": precision,
        "stride": config.stride,
        "exported_size": list(size),
        "exported_objects": objects,
        "capacity": capacity,
        "dimensions": {
            "O": "objects (any count; a new object adds a row to every state tensor)",
            "h": "padded frame height / 16",
            "w": "padded frame width / 16",
            "N": "long-term capacity per object (entries), at least 2 * h * w",
            **{name: f"{value} channels" for name, value in sizes.items()},
        },
        "graphs": {name: graphs[name] for name in GRAPH_NAMES},
        "state": [
            {
                "name": name,
                "shape": [sizes.get(d, d) for d in dims],
                "dtype": "int64" if name.endswith("length") else state_dtype,
                "initial": "zeros, O = 0 (objects are added by the first mask)",
                "meaning": _STATE_MEANING[name],
            }
            for name, dims in _STATE.items()
        ],
        "protocol": PROTOCOL,
    }


def read_sidecar(folder: str | os.PathLike) -> dict:
    """The sidecar of an export folder.

    Raises:
        InputError: the folder holds no sidecar, a sidecar of another format, or misses a graph.
    """
    folder = Path(folder)
    path = folder / SIDECAR
    if not path.is_file():
        raise InputError(
            f"{folder} is not a swiftcuda ONNX export (no {SIDECAR}): create one with `swiftcuda export --onnx {folder}`"
        )
    try:
        sidecar = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON ({error}): export again with `swiftcuda export --onnx`") from None
    if sidecar.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path} has format version {sidecar.get('format_version')}, this swiftcuda reads {FORMAT_VERSION}: export again"
        )
    missing = [name for name in GRAPH_NAMES if not (folder / f"{name}.onnx").is_file()]
    if missing:
        raise InputError(
            f"{folder} lacks {', '.join(f'{m}.onnx' for m in missing)}: export again with `swiftcuda export --onnx`"
        )
    return sidecar
