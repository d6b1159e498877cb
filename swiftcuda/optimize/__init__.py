"""Model preparation: how a SwiftNet runs fast on a device, apart from what it computes (``model/``).

:func:`prepare` makes the engine's copy of a model (batch norms folded, channels-last weights,
Winograd or measured CPU convolution algorithms, fused ReLUs and adds, compiled convolutions), as
:class:`PrepareOptions` asks:

- :mod:`~swiftcuda.optimize.prepare`: the copy, its options and the mark of a prepared model;
- :mod:`~swiftcuda.optimize.winograd`: Winograd 3x3 convolutions (float32, CPU);
- :mod:`~swiftcuda.optimize.conv_tuning`: each CPU convolution's algorithm chosen by measurement;
- :mod:`~swiftcuda.optimize.pointwise_fusion`, :mod:`~swiftcuda.optimize.fused_conv`: the ReLUs and
  residual adds run inside oneDNN's convolutions (16 bits, CPU).

:class:`~swiftcuda.inference.Segmenter` prepares a model that is not prepared yet with the default
options; prepare it yourself for others.
"""

from swiftcuda.optimize.prepare import PrepareOptions, is_prepared, mark_prepared, prepare

__all__ = ["PrepareOptions", "is_prepared", "mark_prepared", "prepare"]
