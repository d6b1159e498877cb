"""Running the engine outside Python: the per-frame step as ONNX graphs with the memory as explicit state.

- :func:`export_onnx` writes four graphs (``encode_query``, ``read_and_decode``, ``encode_memory``,
  ``update_memory``) and a JSON sidecar describing their inputs, outputs, the state layout and the
  step's protocol (``swiftcuda export --onnx``);
- :class:`OnnxSegmenter` runs them on ONNX Runtime with :class:`~swiftcuda.inference.Segmenter`'s
  ``step()`` API (``swiftcuda segment --runtime onnx``, through the export cache of
  :func:`cached_export`).

``onnx``, ``onnxruntime`` and ``onnxscript`` come with the optional extra ``swiftcuda[onnx]``.
"""

from swiftcuda.onnx.cache import cached_export
from swiftcuda.onnx.export import SIDECAR, export_onnx, read_sidecar
from swiftcuda.onnx.runtime import OnnxSegmenter

__all__ = ["SIDECAR", "OnnxSegmenter", "cached_export", "export_onnx", "read_sidecar"]
