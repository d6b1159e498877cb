"""The training loop: clips, loss, optimiser, checkpoints, resume.

Checkpoints hold the model, the optimiser, the schedule's step and the random state, and are
written all-or-nothing. Resuming from one continues exactly where the run stopped: the clips of
step s come from a generator seeded by (seed, s), and the torch random state (dropout) is restored.
Because a step's clips depend on nothing else, worker processes can draw them ahead of the model
(``TrainOptions.workers``) without changing what is trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from swiftcuda.errors import InputError
from swiftcuda.io.output import staged_file
from swiftcuda.model import SwiftNet
from swiftcuda.train.clips import Clip, ClipOptions, ClipSampler, load_davis_sequences
from swiftcuda.train.forward import clip_loss, matching_loss, object_masks, predict_clips
from swiftcuda.weights import check_state_dict, read_state_dict, resolve_device

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
FINAL_WEIGHTS = "model.pt"
OPTIONS_FILE = "train.json"

# One step's clips: frames (B, T, 3, H, W) float32, labels [(T, H, W) int64] and object counts [K].
StepBatch = tuple[torch.Tensor, list[torch.Tensor], list[int]]


@dataclass(frozen=True)
class TrainOptions:
    """Training settings (all recorded in ``OUT/train.json``).

    Attributes:
        steps: optimiser steps in all.
        batch_size: clips per step.
        clip: how clips are drawn.
        lr: peak learning rate (AdamW), reached after ``warmup`` steps, then cosine decay.
        weight_decay: AdamW weight decay.
        warmup: linear warm-up steps.
        save_every: steps between checkpoints.
        keep: how many step checkpoints to keep besides ``last.pt`` (at least 1).
        seed: seeds the initial weights and every clip.
        device: "cpu" or "cuda".
        amp: mixed precision: on CUDA bfloat16 where supported, else float16 with loss scaling;
            on the CPU bfloat16 (worth it where the CPU has native bfloat16, e.g. AVX512-BF16 or AMX).
        freeze_bn: keep the trunk's batch norms in inference mode (for fine-tuning).
        variant: "r18" or "r50".
        data_scale: resize factor applied to the data when it is read.
        sequences: train on these sequences only (default: all).
        matching_loss: weight of :func:`~swiftcuda.train.forward.matching_loss` beside the
            segmentation loss (0: the segmentation loss alone, as the official training).
        workers: processes that draw clips ahead of the model (None: none on the CPU, where the
            model wants every core, and up to 8 on a GPU, which one process cannot keep busy).
            The clips, and so the training, are the same for any number.
    """

    steps: int = 20000
    batch_size: int = 4
    clip: ClipOptions = field(default_factory=ClipOptions)
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int = 200
    save_every: int = 1000
    keep: int = 2
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    freeze_bn: bool = False
    variant: str = "r18"
    data_scale: float = 1.0
    sequences: tuple[str, ...] | None = None
    matching_loss: float = 0.0
    workers: int | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def learning_rate_factor(step: int, options: TrainOptions) -> float:
    """Linear warm-up to 1, then cosine decay to 0.01 at the last step."""
    if step < options.warmup:
        return (step + 1) / options.warmup
    progress = (step - options.warmup) / max(options.steps - options.warmup, 1)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _set_train_mode(model: SwiftNet, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


def default_workers(device: torch.device) -> int:
    """Clip-drawing processes for :attr:`TrainOptions.workers` = None on ``device``."""
    if device.type != "cuda":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class _StepClips(torch.utils.data.Dataset):
    """Item ``s`` is the :data:`StepBatch` of training step ``s``.

    A map-style data set indexed by step, so that a DataLoader's workers draw exactly the clips the
    sampler gives in-process, in order, for any number of workers.
    """

    def __init__(self, sampler: ClipSampler, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size

    def __getitem__(self, step: int) -> StepBatch:
        clips: list[Clip] = self.sampler.batch(step, self.batch_size)
        return torch.stack([c.frames for c in clips]), [c.labels for c in clips], [c.num_objects for c in clips]


def _step_checkpoint(out: Path, step: int) -> Path:
    return out / f"step-{step:07d}.pt"


def _save(path: Path, payload: dict) -> None:
    with staged_file(path, overwrite=True) as staging:
        torch.save(payload, staging)


class Trainer:
    """Owns the model, optimiser and data of one training run in ``out``."""

    def __init__(self, data_roots: list[str | os.PathLike], out: str | os.PathLike, options: TrainOptions) -> None:
        self.out = Path(out)
        self.options = options
        self.device = resolve_device(options.device)
        names = list(options.sequences) if options.sequences else None
        sequences = [
            sequence
            for root in data_roots
            for sequence in load_davis_sequences(root, names=names, scale=options.data_scale)
        ]
        self.sampler = ClipSampler(sequences, options.clip, seed=options.seed)
        self.data_roots = [str(root) for root in data_roots]
        self.sequence_names = [s.name for s in sequences]
        torch.manual_seed(options.seed)
        self.model = SwiftNet(options.variant).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: learning_rate_factor(s, options))
        self.use_amp = options.amp
        on_cuda = self.device.type == "cuda"
        self.amp_dtype = torch.float16 if on_cuda and not torch.cuda.is_bf16_supported() else torch.bfloat16
        # Loss scaling is needed for float16 only (bfloat16 has float32's range).
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.step = 0

    # -- checkpoints -------------------------------------------------------------------------

    def save(self) -> Path:
        """Write ``step-XXXXXXX.pt`` and ``last.pt``; drop step checkpoints beyond ``keep``."""
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "torch_rng": torch.get_rng_state(),
            "options": json.dumps(self.options.to_json()),
        }
        path = _step_checkpoint(self.out, self.step)
        _save(path, payload)
        _save(self.out / LAST_CHECKPOINT, payload)
        for old in sorted(self.out.glob("step-*.pt"))[: -max(self.options.keep, 1)]:
            old.unlink()
        return path

    def resume(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch.load raises many types for unreadable files
            raise InputError(f"cannot resume from {path}: not a swiftcuda training checkpoint ({error})") from None
        if not isinstance(checkpoint, dict) or "optimizer" not in checkpoint or "step" not in checkpoint:
            raise InputError(f"cannot resume from {path}: not a swiftcuda training checkpoint")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.step = int(checkpoint["step"])
        torch.set_rng_state(checkpoint["torch_rng"])

    def initialise_from(self, init: str | os.PathLike) -> None:
        """Start from the weights of a checkpoint (official or swiftcuda) to fine-tune."""
        state = read_state_dict(init)
        check_state_dict(self.model, state, origin=str(init))
        self.model.load_state_dict(state)

    # -- training ----------------------------------------------------------------------------

    def step_batches(self) -> Iterator[StepBatch]:
        """The batches of steps ``self.step`` to ``options.steps - 1``, drawn ahead by the workers."""
        workers = default_workers(self.device) if self.options.workers is None else self.options.workers
        loader = torch.utils.data.DataLoader(
            _StepClips(self.sampler, self.options.batch_size),
            sampler=range(self.step, self.options.steps),
            batch_size=None,  # an item is already a step's batch
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
            # Its own generator: seeding workers from the global one would move the torch random
            # state that checkpoints restore (clips take their randomness from the step alone).
            generator=torch.Generator(),
        )
        return iter(loader)

    def train_step(self, batch: StepBatch) -> float:
        """One optimiser step on the current step's clips, as :meth:`step_batches` gives them; returns the loss."""
        frames, labels, num_objects = batch
        frames = frames.to(self.device, non_blocking=True)
        labels = [label.to(self.device, non_blocking=True) for label in labels]
        first_objects = [object_masks(label[0], count) for label, count in zip(labels, num_objects)]
        _set_train_mode(self.model, self.options.freeze_bn)
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.use_amp else contextlib.nullcontext()
        with autocast:
            predictions = predict_clips(self.model, frames, first_objects)
            losses = [clip_loss(p.probabilities, label) for p, label in zip(predictions, labels)]
            if self.options.matching_loss > 0:
                weight = self.options.matching_loss
                losses = [
                    loss + weight * matching_loss(p, label) for loss, p, label in zip(losses, predictions, labels)
                ]
            loss = torch.stack(losses).mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=5.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return float(loss.detach())

    def run(self, progress: bool = True) -> list[float]:
        """Train up to ``options.steps``, checkpointing every ``save_every`` steps and at the end.

        Returns:
            The loss of every step run now.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        record = {"options": self.options.to_json(), "data": self.data_roots, "sequences": self.sequence_names}
        (self.out / OPTIONS_FILE).write_text(json.dumps(record, indent=2) + "\n")
        losses: list[float] = []
        smoothed = None
        started = time.perf_counter()
        bar = tqdm(total=self.options.steps, initial=self.step, unit="step", desc="train", disable=not progress)
        with bar:
            for batch in self.step_batches():
                loss = self.train_step(batch)
                losses.append(loss)
                smoothed = loss if smoothed is None else 0.95 * smoothed + 0.05 * loss
                elapsed = time.perf_counter() - started
                bar.set_postfix(
                    loss=f"{smoothed:.4f}", clips_per_s=f"{len(losses) * self.options.batch_size / elapsed:.2f}"
                )
                bar.update()
                if self.step % self.options.save_every == 0 or self.step == self.options.steps:
                    self.save()
        weights = {name: tensor.detach().cpu() for name, tensor in self.model.state_dict().items()}
        _save(self.out / FINAL_WEIGHTS, weights)
        return losses


def train(
    data_roots: list[str | os.PathLike],
    out: str | os.PathLike,
    options: TrainOptions,
    init: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[float]:
    """Train SwiftNet on the DAVIS-layout data sets in ``data_roots``, writing checkpoints into ``out``.

    Args:
        init: weights to start from (fine-tuning), ignored when resuming.
        resume: continue from ``out/last.pt``.

    Returns:
        The loss of every step run.
    """
    # The output folder is checked before the data loads.
    last = Path(out) / LAST_CHECKPOINT
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"output folder {out} is a file: choose a folder path")
    if resume and not last.is_file():
        raise InputError(f"nothing to resume: {last} does not exist (drop --resume to start afresh)")
    if not resume and last.is_file():
        raise InputError(f"{out} already holds a training run: pass --resume to continue it, or choose another --out")
    trainer = Trainer(data_roots, out, options)
    if resume:
        trainer.resume(last)
        logger.info("resumed from %s at step %d", last, trainer.step)
    elif init is not None:
        trainer.initialise_from(init)
    return trainer.run(progress=progress)


def export_weights(checkpoint: str | os.PathLike, path: str | os.PathLike, dtype: torch.dtype = torch.float16) -> Path:
    """Write a checkpoint's model weights alone, floating tensors cast to ``dtype`` (shipping size).

    Args:
        checkpoint: a training checkpoint or any state dict :func:`swiftcuda.load_model` reads.
        path: the file to write (replaced).

    Returns:
        ``path``.
    """
    state = read_state_dict(checkpoint)
    slim = {name: t.to(dtype) if t.is_floating_point() else t for name, t in state.items()}
    _save(Path(path), slim)
    return Path(path)
