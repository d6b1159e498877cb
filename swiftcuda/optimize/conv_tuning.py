"""CPU convolution algorithms chosen by measurement, as ``torch.backends.cudnn.benchmark`` does on GPUs.

Which way of computing a convolution is fastest depends on the CPU (AVX2, AVX-512, AMX), the
layer's shape, the dtype and the thread count: NNPACK's Winograd kernels beat oneDNN's direct
convolution on some CPUs and lose to it on others (AMX in bfloat16), and whether oneDNN
prefers the input channels-last or NCHW changes from layer to layer. So no rule of thumb is kept:
the first time a :class:`TunedConv2d` sees an input (shape, dtype, threads), it times every
candidate that can compute it once, and records the times in an on-disk cache per CPU model,
instruction sets and torch version (``$XDG_CACHE_HOME/swiftcuda``, ``~/.cache/swiftcuda`` by
default), so later processes start without measuring. ``swiftcuda tune`` does the same ahead of time
and prints the table.

Candidates:

- ``channels_last``: oneDNN's direct convolution on an NHWC input (what the engine does untuned);
- ``nchw``: the same on a contiguous NCHW input;
- ``winograd``: the extension's NNPACK Winograd F(6x6, 3x3) kernels (float32, 3x3, stride 1, NCHW),
  which differ from a direct convolution by about 1e-5 of the output's magnitude.

One strategy for the whole model. Timing each convolution alone and letting each pick its layout
does not add up to the step: the residual adds, ReLUs and concatenations between two convolutions
then run on mixed layouts, which costs more than any convolution saved (measured: 4-5% slower than
the fixed rule under AVX2). So the model runs one of three strategies, and each layer's candidates
are timed for each:

- ``fixed``: the untuned engine's rule (Winograd for the 3x3 layers
  :func:`~swiftcuda.optimize.winograd.use_winograd_convolutions` picks, in float32 where it runs;
  oneDNN direct on whatever layout arrives elsewhere), timed on the input as that pipeline feeds it;
- ``channels_last`` / ``nchw``: every tuned convolution returns that layout, and each layer runs
  its fastest candidate with the layout changes (in and out) included in its time.

While layers are still meeting new inputs the model runs ``fixed`` (so its timings see the inputs
that pipeline makes); after a whole pass in which no layer met a new input, it takes the strategy
whose per-layer times sum lowest (``fixed`` unless another is faster by more than MARGIN). A choice
read from the cache counts as new too, so the same frames run ``fixed`` whether the cache was cold
or warm, and a video's masks do not depend on what the cache held (they would otherwise differ in a
few pixels where the strategy picks Winograd or another layout).

The cache file is written atomically (a temporary file in the same folder, then ``os.replace``),
and a corrupt or foreign file (another CPU, torch or format) is ignored with one log line and
rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swiftcuda.cpu import cpu_info, cpu_model_name
from swiftcuda.optimize.winograd import MIN_CHANNELS, is_winograd_eligible, winograd_available
from swiftcuda.precision import dtype_name

__all__ = [
    "ALGORITHMS",
    "ConvTuner",
    "TunedConv2d",
    "TuningCache",
    "default_cache_path",
    "use_tuned_convolutions",
]

log = logging.getLogger(__name__)

#: Every algorithm a :class:`TunedConv2d` can run.
ALGORITHMS = ("channels_last", "nchw", "winograd")
#: Bump when the key or the file's layout changes: older files are then rebuilt.
CACHE_FORMAT = 3
#: The model layouts, by name.
LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
#: The untuned engine's rule, and the strategies a model can run (see the module docstring).
FIXED = "fixed"
STRATEGIES = (FIXED, *LAYOUTS)
#: Timing rounds (each runs every candidate once, after one untimed run of each): at least
#: MIN_ROUNDS, then more while the rounds have taken less than TIME_BUDGET_S, up to MAX_ROUNDS.
#: Candidates take turns so that a busy neighbour slows them alike, and each keeps its fastest run:
#: on a shared machine the slower runs measure the neighbours' load, not the algorithm.
MIN_ROUNDS, MAX_ROUNDS, TIME_BUDGET_S = 3, 10, 0.1
#: Within a layout, its plain direct convolution (no layout change) is kept unless another candidate
#: is faster by more than MARGIN; between strategies, the fixed rule likewise: no switch on noise.
MARGIN = 1.05


def instruction_sets() -> str:
    """The instruction sets the kernels may use here: ATen's level, and oneDNN's limit when one is
    set (``ONEDNN_MAX_CPU_ISA``), since either changes which algorithm is fastest."""
    info = cpu_info()
    return info.capability + (f"-onednn-{info.onednn_isa_limit}" if info.onednn_isa_limit else "")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def default_cache_path(cpu_model: str | None = None, torch_version: str | None = None, isa: str | None = None) -> Path:
    """Where the tuning cache of this CPU model, instruction sets and torch version lives (XDG
    cache folder)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "swiftcuda"
    cpu = _slug(cpu_model or cpu_model_name())
    isa = _slug(isa or instruction_sets())
    version = _slug(torch_version or torch.__version__)
    return root / f"conv-tuning-{cpu}-{isa}-torch{version}.json"


@dataclasses.dataclass
class Choice:
    """The measurement of one convolution input: per strategy (:data:`STRATEGIES`), each
    candidate's milliseconds (for a layout, its output in that layout, layout changes included;
    for ``fixed``, the rule's one algorithm on the input as that pipeline feeds it)."""

    milliseconds: dict[str, dict[str, float]]

    def algorithm(self, strategy: str) -> str:
        """The candidate to run when the model runs ``strategy``."""
        if strategy == FIXED:
            return next(iter(self.milliseconds[FIXED]))
        return pick(self.milliseconds[strategy], default=strategy)

    def best_ms(self, strategy: str) -> float:
        return self.milliseconds[strategy][self.algorithm(strategy)]


class TuningCache:
    """The choices of one CPU model and torch version, kept in memory and in one JSON file.

    Args:
        path: the file (:func:`default_cache_path` when None); None and ``persist=False`` keep the
            choices in memory only.
        persist: write every new choice to the file.
    """

    def __init__(self, path: Path | None = None, persist: bool = True) -> None:
        self.path = default_cache_path() if path is None else Path(path)
        self.persist = persist
        self.identity = {
            "format": CACHE_FORMAT,
            "cpu": cpu_model_name(),
            "isa": instruction_sets(),
            "torch": torch.__version__,
        }
        self.choices: dict[str, Choice] = self._load()

    def _load(self) -> dict[str, Choice]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if {k: data.get(k) for k in self.identity} != self.identity:
                log.warning(
                    "ignoring the convolution tuning cache %s: it was made for %s; rebuilding it",
                    self.path,
                    {k: data.get(k) for k in self.identity},
                )
                return {}
            return {key: Choice(**value) for key, value in data["choices"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("ignoring the unreadable convolution tuning cache %s (%s); rebuilding it", self.path, error)
            return {}

    def get(self, key: str) -> Choice | None:
        """The recorded choice for ``key``. On a miss the file is read again first: another model
        or process may have measured it since, and two engines that compare their results must
        run the same algorithms."""
        if key not in self.choices and self.persist:
            self.choices = {**self._load(), **self.choices}
        return self.choices.get(key)

    def put(self, key: str, choice: Choice) -> None:
        """Record ``choice``; a cache folder that cannot be written only loses the persistence."""
        if not self.choices:
            log.info("measuring this CPU's convolution algorithms (once per input shape; kept in %s)", self.path)
        self.choices[key] = choice
        if self.persist:
            try:
                self.save()
            except OSError as error:
                log.warning(
                    "cannot write the convolution tuning cache %s (%s): keeping the choices in memory only",
                    self.path,
                    error,
                )
                self.persist = False

    def save(self) -> None:
        """Write the file atomically: readers see the old file or the new one, never a part."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {**self.identity, "choices": {key: dataclasses.asdict(c) for key, c in sorted(self.choices.items())}}
        handle, temporary = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(data, file, indent=1)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def measure_ms(runs: dict[str, Callable[[], Tensor]]) -> dict[str, float]:
    """Milliseconds of each candidate's fastest call, candidates taking turns (see MIN_ROUNDS)."""
    for run in runs.values():
        run()  # the first call packs weights and allocates: not what later frames pay
    times: dict[str, list[float]] = {name: [] for name in runs}
    rounds, started = 0, time.perf_counter()
    while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and time.perf_counter() - started < TIME_BUDGET_S):
        for name, run in runs.items():
            begun = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - begun)
        rounds += 1
    return {name: min(values) * 1000 for name, values in times.items()}


def pick(milliseconds: dict[str, float], default: str = "channels_last") -> str:
    """The fastest candidate, or ``default`` when it is within MARGIN of the fastest."""
    fastest = min(milliseconds, key=milliseconds.get)
    kept = milliseconds.get(default)
    if kept is not None and kept <= MARGIN * milliseconds[fastest]:
        return default
    return fastest


class ConvTuner:
    """Measures every convolution input once (through a :class:`TuningCache`) and decides the
    model's strategy and each layer's algorithm under it (see the module docstring).

    Args:
        cache: where choices are looked up and recorded.
        winograd: False leaves the Winograd kernels out of the candidates (the direct computation
            only); True or None include them where they can run.
    """

    def __init__(self, cache: TuningCache, winograd: bool | None = None) -> None:
        self.cache = cache
        self.allow_winograd = winograd is not False and winograd_available()
        #: (layer name, key, choice) of every lookup, in call order, for ``swiftcuda tune``'s table.
        self.seen: list[tuple[str, str, Choice]] = []
        # Per (layer, input key): what the totals sum. Keyed by the layer too, because layers of the
        # same shape share a key and each of them runs in a step: a ResNet stage's four 3x3
        # convolutions count four times, not once.
        self._choices: dict[tuple[int, str], Choice] = {}
        self._strategy: str | None = None  # decided once settled; None: decide again
        self._calls_since_new_input = 0  # layer calls on inputs each layer had met before, in a row

    def note_hit(self) -> None:
        """A layer ran on an input it had met before (counts towards a whole pass)."""
        self._calls_since_new_input += 1

    def settled(self) -> bool:
        """Whether a whole pass (as many calls as (layer, input) pairs) went without a layer meeting
        a new input, whether its choice was measured or read from the cache."""
        return self._calls_since_new_input >= len(self._choices)

    def strategy(self) -> str:
        """What the model runs: ``fixed`` until settled; then the strategy whose per-layer
        times sum lowest (``fixed`` unless another is faster by more than MARGIN)."""
        if not self.settled():
            return FIXED
        if self._strategy is None:
            self._strategy = self.best_strategy()
        return self._strategy

    def best_strategy(self) -> str:
        """The strategy the measurements so far favour (``fixed`` unless another is faster by more
        than MARGIN)."""
        return pick(self.totals(), default=FIXED)

    def totals(self) -> dict[str, float]:
        """Per strategy, the sum of the per-layer milliseconds over the (layer, input) pairs seen."""
        return {name: sum(choice.best_ms(name) for choice in self._choices.values()) for name in STRATEGIES}

    def fixed_algorithm(self, conv: TunedConv2d, x: Tensor) -> str:
        """What the untuned engine runs for ``conv``: Winograd where its rule applies, else oneDNN
        direct on the layout that arrives (``as_is``)."""
        winograd = self.allow_winograd and conv.fixed_rule_winograd and x.dtype == torch.float32
        return "winograd" if winograd else "as_is"

    def candidates(self, conv: TunedConv2d, x: Tensor) -> tuple[str, ...]:
        names = ["channels_last", "nchw"]
        if self.allow_winograd and conv.winograd_eligible and x.dtype == torch.float32:
            names.append("winograd")
        return tuple(names)

    def key(self, conv: TunedConv2d, x: Tensor) -> str:
        return (
            f"{conv.describe()} in={tuple(x.shape)} {dtype_name(x.dtype)} "
            f"threads={torch.get_num_threads()}{'' if self.allow_winograd else ' direct'}"
        )

    def choose(self, conv: TunedConv2d, x: Tensor) -> Choice:
        """The measurement for ``conv`` on inputs like ``x``: from the cache, or taken now."""
        key = self.key(conv, x)
        candidates = self.candidates(conv, x)
        fixed = self.fixed_algorithm(conv, x)
        choice = self.cache.get(key)
        if (
            choice is None
            or set(choice.milliseconds) != set(STRATEGIES)
            or set(choice.milliseconds[FIXED]) != {fixed}
            or any(set(choice.milliseconds[layout]) != set(candidates) for layout in LAYOUTS)
        ):
            # the fixed rule on the input as it arrives (the model runs FIXED while measuring)
            milliseconds = {FIXED: measure_ms({fixed: lambda: conv.run(fixed, x, None)})}
            for layout, memory_format in LAYOUTS.items():
                source = x.contiguous(memory_format=memory_format)  # as a layer of that model receives it
                milliseconds[layout] = measure_ms(
                    {
                        name: (lambda name=name, source=source, fmt=memory_format: conv.run(name, source, fmt))
                        for name in candidates
                    }
                )
            choice = Choice(milliseconds)
            log.debug("tuned %s (%s): %s", conv.name, key, choice)
            self.cache.put(key, choice)
        # New to this layer, measured or not: not settled (see the module docstring).
        self._calls_since_new_input = 0
        self.seen.append((conv.name, key, choice))
        self._choices[id(conv), key] = choice
        self._strategy = None
        return choice


class TunedConv2d(nn.Module):
    """A convolution that runs the algorithm its :class:`ConvTuner` measured fastest for each input.

    Takes (B, C, H, W) CPU input in either memory format; returns (B, K, H', W') in the layout of the
    model's strategy (:meth:`ConvTuner.strategy`; the fixed rule: the layout its algorithm makes).
    On other devices, and when training, it is a plain convolution.

    Args:
        conv: the convolution to replace (its weights are shared, not copied).
        tuner: shared by every layer of a model.
        name: the layer's name in the model, for the tuning table.
    """

    def __init__(self, conv: nn.Conv2d, tuner: ConvTuner, name: str = "") -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.winograd_eligible = is_winograd_eligible(conv)
        self.fixed_rule_winograd = self.winograd_eligible and (
            conv.out_channels >= MIN_CHANNELS or conv.in_channels <= MIN_CHANNELS
        )
        self.tuner = tuner
        self.name = name
        self._chosen: dict[tuple, Choice] = {}  # per input shape and dtype, so a stream skips the cache
        self._weights: dict[str, Tensor] = {}  # the weight in each layout an algorithm asked for

    def describe(self) -> str:
        out_channels, in_channels, kh, kw = self.weight.shape
        return (
            f"conv {in_channels}->{out_channels} {kh}x{kw} s{self.stride[0]} p{self.padding[0]} "
            f"d{self.dilation[0]} g{self.groups}{' bias' if self.bias is not None else ''}"
        )

    def _weight(self, layout: torch.memory_format) -> Tensor:
        name = "cl" if layout == torch.channels_last else "nchw"
        if name not in self._weights:
            self._weights[name] = self.weight.detach().contiguous(memory_format=layout)
        return self._weights[name]

    def run(self, algorithm: str, x: Tensor, output_format: torch.memory_format | None) -> Tensor:
        """The convolution of ``x`` computed by ``algorithm`` (one of :data:`ALGORITHMS`, or
        ``as_is``: oneDNN on ``x`` as it is, channels-last weights), returned in ``output_format``
        (None: as the algorithm makes it)."""
        if algorithm == "winograd":
            out = torch.ops.swiftcuda.conv3x3(x.contiguous(), self._weight(torch.contiguous_format), self.bias)
        elif algorithm == "as_is":
            out = F.conv2d(
                x, self._weight(torch.channels_last), self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        else:
            layout = LAYOUTS[algorithm]
            out = F.conv2d(
                x.contiguous(memory_format=layout),
                self._weight(layout),
                self.bias,
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
        return out if output_format is None else out.contiguous(memory_format=output_format)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
            # Training or another device: the plain convolution (autograd, cuDNN's own choice).
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        key = (tuple(x.shape), x.dtype)
        choice = self._chosen.get(key)
        if choice is None:
            choice = self._chosen[key] = self.tuner.choose(self, x)
        else:
            self.tuner.note_hit()
        strategy = self.tuner.strategy()
        return self.run(choice.algorithm(strategy), x, LAYOUTS.get(strategy))

    def extra_repr(self) -> str:
        strategy = self.tuner.strategy()
        chosen = sorted({choice.algorithm(strategy) for choice in self._chosen.values()})
        return f"{self.describe()}, model strategy {strategy}, chosen={chosen or 'not yet'}"


def use_tuned_convolutions(model: nn.Module, tuner: ConvTuner, prefix: str = "") -> int:
    """Replace every plain ``nn.Conv2d`` of ``model`` (in place) by a :class:`TunedConv2d`.

    Returns:
        How many were replaced.
    """
    replaced = 0
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        if type(child) is nn.Conv2d and child.padding_mode == "zeros" and not isinstance(child.padding, str):
            setattr(model, name, TunedConv2d(child, tuner, path))
            replaced += 1
        else:
            replaced += use_tuned_convolutions(child, tuner, prefix=f"{path}.")
    return replaced
