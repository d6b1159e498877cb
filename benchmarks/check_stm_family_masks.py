"""Do XMem's, Cutie's and STCN's own inference loops give the same masks with swiftcuda's read?

Each family runs its own ``InferenceCore`` twice on one generated video, with its network built
at random (no weights are downloaded: the ResNet builders are asked for no pretrained weights),
once as released and once after ``swiftcuda.integrations.<family>.patch()``, and the masks are
compared pixel by pixel over every frame after the first. Long-term memory is engaged in XMem
and Cutie through small working-memory limits, and an object enters the video later, so several
object groups (XMem) or buckets (Cutie) are read.

Usage::

    python benchmarks/check_stm_family_masks.py --xmem ~/src/XMem --cutie ~/src/Cutie --stcn ~/src/STCN

A family whose repository is not given is skipped. Their code needs only PyTorch, plus
torchvision (STCN) and hydra-core / omegaconf (Cutie). Each family runs in its own process, since
XMem and STCN both have top-level ``model`` and ``util`` packages. Exit status 1 when a family's
agreement is below ``--min-agreement``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

FAMILIES = ("xmem", "cutie", "stcn")
_RESULT = "RESULT "
_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for family in FAMILIES:
        parser.add_argument(f"--{family}", type=Path, help=f"root of the {family} repository (skipped when absent)")
    parser.add_argument("--frames", type=int, default=16, help="video length (default 16)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and the video")
    parser.add_argument("--backend", default=None, help="swiftcuda op backend (default: best available)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--key-scale",
        type=float,
        default=0.1,
        help="factor on the random key projection (default 0.1): unscaled random keys lie so far apart "
        "that the released reads, which exponentiate the top-k logits without subtracting their maximum, "
        "underflow to NaN; trained keys are in the scaled range",
    )
    parser.add_argument("--min-agreement", type=float, default=0.995)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", choices=FAMILIES, help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------
# The video: moving ellipses on a textured background; objects 1 and 2 given in frame 0,
# object 3 given when it enters.


def make_video(frames: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Frames (T, 3, H, W) ImageNet-normalised, label maps (T, H, W) int64, the entry frame of object 3."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    texture = torch.rand(3, height // 8 + 1, width // 8 + 1, generator=generator)
    background = torch.nn.functional.interpolate(texture[None], size=(height, width), mode="bilinear")[0]
    colours = torch.rand(3, 3, generator=generator)
    starts = torch.rand(3, 2, generator=generator) * torch.tensor([height, width]) * 0.6 + 10
    speeds = (torch.rand(3, 2, generator=generator) - 0.5) * 6
    radii = torch.tensor([[height / 5, width / 6], [height / 6, width / 5], [height / 7, width / 7]])
    enter = frames // 3
    images, labels = [], []
    for t in range(frames):
        image = background.clone() + 0.05 * torch.randn(3, height, width, generator=generator)
        label = torch.zeros(height, width, dtype=torch.int64)
        for obj in range(3):
            if obj == 2 and t < enter:
                continue
            centre = starts[obj] + speeds[obj] * t
            inside = ((ys - centre[0]) / radii[obj, 0]) ** 2 + ((xs - centre[1]) / radii[obj, 1]) ** 2 <= 1
            image[:, inside] = colours[obj][:, None]
            label[inside] = obj + 1
        images.append((image.clamp(0, 1) - _IMAGENET_MEAN) / _IMAGENET_STD)
        labels.append(label)
    return torch.stack(images), torch.stack(labels), enter


def one_hot(label: torch.Tensor, objects: list[int]) -> torch.Tensor:
    return torch.stack([(label == obj).float() for obj in objects])


# --------------------------------------------------------------------------------------------
# Random weights without downloads, and STCN's hard-coded CUDA on a CPU.


def _without_pretrained(builder, torchvision_style: bool = False):
    @functools.wraps(builder)
    def build(*args, pretrained=True, **kwargs):
        if torchvision_style:
            return builder(*args, weights=None, **kwargs)
        return builder(*args, pretrained=False, **kwargs)

    return build


def no_downloads(module_names: list[str], torchvision: bool = False) -> None:
    import importlib

    for name in module_names:
        module = importlib.import_module(name)
        for builder in ("resnet18", "resnet50"):
            setattr(module, builder, _without_pretrained(getattr(module, builder)))
    if torchvision:
        import torchvision.models

        torchvision.models.resnet50 = _without_pretrained(torchvision.models.resnet50, torchvision_style=True)


@contextlib.contextmanager
def cuda_on(device: str):
    """STCN moves tensors with ``.cuda()`` and allocates on 'cuda': send those to ``device``."""
    if str(device).startswith("cuda"):
        yield
        return
    original_cuda, original_zeros = torch.Tensor.cuda, torch.zeros

    def zeros(*args, device=None, **kwargs):
        return original_zeros(*args, device="cpu" if device == "cuda" else device, **kwargs)

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.zeros = zeros
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.zeros = original_cuda, original_zeros


# --------------------------------------------------------------------------------------------
# One run of each family's own inference loop; returns masks (T, H, W) and facts about the run.


def run_xmem(network, images, labels, enter, device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    from inference.inference_core import InferenceCore

    processor = InferenceCore(network, _xmem_config())
    processor.set_all_labels([1, 2])
    probs, engaged_at = [], None
    for t in range(len(images)):
        mask, valid = None, None
        if t == 0:
            mask, valid = one_hot(labels[0], [1, 2]).to(device), [1, 2]
        elif t == enter:
            processor.set_all_labels([1, 2, 3])
            mask, valid = one_hot(labels[t], [1, 2, 3]).to(device), [3]
            mask[:2] = 0
        prob = processor.step(images[t].to(device), mask, valid, end=t == len(images) - 1)
        probs.append(_pad_objects(prob, 4))
        if engaged_at is None and processor.memory.long_mem.engaged():
            engaged_at = t
    facts = {"long_term_from_frame": engaged_at, "object_groups": processor.memory.work_mem.num_groups}
    return torch.stack(probs).argmax(1), torch.stack(probs), facts


def _xmem_config() -> dict:
    return {
        "top_k": 30,
        "mem_every": 2,
        "deep_update_every": -1,
        "enable_long_term": True,
        "enable_long_term_count_usage": True,
        "num_prototypes": 16,
        "min_mid_term_frames": 2,
        "max_mid_term_frames": 4,
        "max_long_term_elements": 10000,
        "key_dim": 64,
        "value_dim": 512,
        "hidden_dim": 64,
    }


def build_xmem(device):
    no_downloads(["model.resnet"])
    from model.network import XMem

    with contextlib.redirect_stdout(sys.stderr):
        return XMem(_xmem_config()).to(device).eval()


def build_cutie(device, repo: Path):
    no_downloads(["cutie.model.utils.resnet"])
    from cutie.model.cutie import CUTIE
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str((repo / "cutie" / "config").resolve()), version_base="1.3.2"):
        cfg = compose(config_name="eval_config")
    with open_dict(cfg):
        cfg.use_long_term = True
        cfg.mem_every = 2
        cfg.top_k = 30
        cfg.max_internal_size = -1
        cfg.long_term.max_mem_frames = 5
        cfg.long_term.min_mem_frames = 3
        cfg.long_term.num_prototypes = 16
    return CUTIE(cfg).to(device).eval(), cfg


def run_cutie(built, images, labels, enter, device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    from cutie.inference.inference_core import InferenceCore

    network, cfg = built
    processor = InferenceCore(network, cfg)
    probs, engaged_at = [], None
    for t in range(len(images)):
        image = images[t].to(device)
        if t == 0:
            prob = processor.step(image, (labels[0] * (labels[0] <= 2)).to(device), objects=[1, 2])
        elif t == enter:
            prob = processor.step(image, (labels[t] * (labels[t] == 3)).to(device), objects=[3])
        else:
            prob = processor.step(image, end=t == len(images) - 1)
        probs.append(_pad_objects(prob, 4))
        if engaged_at is None and processor.memory.use_long_term and processor.memory.long_mem.engaged():
            engaged_at = t
    facts = {"long_term_from_frame": engaged_at, "buckets": len(processor.memory.work_mem.buckets)}
    return torch.stack(probs).argmax(1), torch.stack(probs), facts


def build_stcn(device):
    no_downloads(["model.mod_resnet"], torchvision=True)
    from model.eval_network import STCN

    return STCN().to(device).eval()


def run_stcn(network, images, labels, enter, device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    from inference_core import InferenceCore

    with cuda_on(device):
        processor = InferenceCore(
            network, images[None].to(device), num_objects=2, top_k=20, mem_every=2, include_last=True
        )
        processor.interact(one_hot(labels[0], [1, 2])[:, None].to(device), 0, len(images))
    height, width = images.shape[-2:]
    prob = processor.prob[:, :, 0, :height, :width].transpose(0, 1)  # (T, objects + 1, H, W)
    return prob.argmax(1), _pad_objects(prob, 4), {"memory_entries": processor.mem_bank.mem_k.shape[-1]}


def _pad_objects(prob: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, H, W) -> (channels, H, W) float32 on the CPU, absent objects at probability 0."""
    prob = prob.float().cpu()
    return (
        torch.cat([prob, prob.new_zeros(channels - prob.shape[0], *prob.shape[1:])])
        if prob.shape[0] < channels
        else prob
    )


# --------------------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> dict:
    """Run one family unpatched then patched, in this process."""
    import importlib

    sys.path.insert(0, str(args.repo.resolve()))
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    images, labels, enter = make_video(args.frames, args.height, args.width, args.seed)
    if args.worker == "xmem":
        built, run = build_xmem(device), run_xmem
    elif args.worker == "cutie":
        built, run = build_cutie(device, args.repo), run_cutie
    else:
        built, run = build_stcn(device), run_stcn
    network = built[0] if isinstance(built, tuple) else built
    with torch.no_grad():
        network.key_proj.key_proj.weight.mul_(args.key_scale)
        network.key_proj.key_proj.bias.mul_(args.key_scale)
    integration = importlib.import_module(f"swiftcuda.integrations.{args.worker}")

    with torch.inference_mode():
        start = time.perf_counter()
        masks, probs, facts = run(built, images, labels, enter, device)
        seconds = time.perf_counter() - start
        with integration.patch(backend=args.backend):
            start = time.perf_counter()
            patched_masks, patched_probs, patched_facts = run(built, images, labels, enter, device)
            patched_seconds = time.perf_counter() - start

    later = slice(1, None)  # frame 0 is the given mask
    equal = (masks[later] == patched_masks[later]).double().mean().item()
    difference = (probs[later] - patched_probs[later]).abs()
    return {
        "family": args.worker,
        "frames": args.frames,
        "size": f"{args.height}x{args.width}",
        "key_scale": args.key_scale,
        "device": str(device),
        "agreement": equal,
        "max_prob_difference": float(difference.max()),
        "mean_prob_difference": float(difference.mean()),
        "foreground": float((masks[later] > 0).double().mean()),
        "labels_seen": sorted(int(v) for v in masks[later].unique()),
        "nan_frames_unpatched": int(torch.isnan(probs).flatten(1).any(1).sum()),
        "nan_frames_patched": int(torch.isnan(patched_probs).flatten(1).any(1).sum()),
        "facts": facts,
        "facts_patched": patched_facts,
        "seconds": round(seconds, 2),
        "seconds_patched": round(patched_seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(_RESULT + json.dumps(worker(args)))
        return 0
    results, failed = [], False
    for family in FAMILIES:
        repo = getattr(args, family)
        if repo is None:
            print(f"{family}: skipped (no --{family} repository given)")
            continue
        if not repo.is_dir():
            print(f"check_stm_family_masks: error: --{family} {repo} is not a folder", file=sys.stderr)
            return 2
        command = [sys.executable, __file__, "--worker", family, "--repo", str(repo)]
        command += ["--frames", str(args.frames), "--height", str(args.height), "--width", str(args.width)]
        command += ["--seed", str(args.seed), "--device", args.device, "--key-scale", str(args.key_scale)]
        if args.backend:
            command += ["--backend", args.backend]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT)]
        if done.returncode != 0 or not lines:
            print(f"{family}: FAILED to run\n{done.stderr[-4000:]}")
            failed = True
            continue
        results.append(json.loads(lines[-1][len(_RESULT) :]))
    if results:
        print(_table(results))
    for result in results:
        if not result["agreement"] >= args.min_agreement or math.isnan(result["agreement"]):
            failed = True
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


def _table(results: list[dict]) -> str:
    rows = [
        "| family | frames | size | device | pixels equal | max abs prob diff | foreground | labels | long-term from frame | NaN frames (released / patched) | unpatched s | patched s |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for r in results:
        rows.append(
            f"| {r['family']} | {r['frames']} | {r['size']} | {r['device']} | {100 * r['agreement']:.3f}% "
            f"| {r['max_prob_difference']:.2e} | {100 * r['foreground']:.1f}% | {r['labels_seen']} "
            f"| {r['facts'].get('long_term_from_frame', 'n/a')} "
            f"| {r['nan_frames_unpatched']} / {r['nan_frames_patched']} | {r['seconds']} | {r['seconds_patched']} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
