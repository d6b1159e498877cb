"""``swiftcuda train``: train or fine-tune SwiftNet on DAVIS-layout data."""

from __future__ import annotations

import argparse
from pathlib import Path

from swiftcuda.cli._arguments import positive_int

HELP = "train or fine-tune SwiftNet on DAVIS-layout videos"


def _crop(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        height, width = (int(parts[0]), int(parts[-1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"crop must be HxW or a single size, got {text}") from None
    if height % 16 or width % 16 or height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"crop sides must be positive multiples of 16, got {text}")
    return height, width


def _scale_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scale range must be LOW,HIGH like 0.7,1.0, got {text}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"scale range needs 0 < LOW <= HIGH, got {text}")
    return low, high


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=(
            "Train SwiftNet on clips of a DAVIS-layout folder (JPEGImages/480p, Annotations/480p with a "
            "mask for every frame): the first frame's mask is given, later frames are predicted through "
            "the memory as at inference, and the loss is the cross-entropy of the predicted frames."
        ),
    )
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        action="append",
        metavar="ROOT",
        help="DAVIS-layout training data (repeat to train on several sets)",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for checkpoints and train.json")
    parser.add_argument("--init", type=Path, metavar="CKPT", help="start from these weights (e.g. the official ones)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--steps", type=positive_int, default=20000)
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--crop", type=_crop, default=(240, 240), metavar="HxW", help="clip size (multiples of 16)")
    parser.add_argument("--clip-length", type=positive_int, default=3, help="frames per clip")
    parser.add_argument("--max-skip", type=positive_int, default=5, help="largest gap between clip frames")
    parser.add_argument("--max-objects", type=positive_int, default=3)
    parser.add_argument(
        "--scale-range",
        type=_scale_range,
        default=(0.7, 1.0),
        metavar="LOW,HIGH",
        help="random resize of each clip before cropping (default 0.7,1.0)",
    )
    parser.add_argument(
        "--no-colour-shuffle",
        dest="colour_shuffle",
        action="store_false",
        help="do not permute, rescale or invert each clip's colours",
    )
    parser.add_argument(
        "--matching-loss",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="add this weight of a loss that makes frame 0's memory read match pixels (default 0: off)",
    )
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--save-every", type=positive_int, default=1000)
    parser.add_argument("--keep", type=positive_int, default=2, help="step checkpoints kept besides last.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-scale", type=float, default=1.0, help="resize the data by this factor when reading it")
    parser.add_argument("--sequences", help="comma-separated sequences to train on (default: all)")
    parser.add_argument("--variant", choices=("r18", "r50"), default="r18")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--amp",
        choices=("auto", "on", "off"),
        default="auto",
        help="mixed precision (auto: on for CUDA, off for the CPU; on the CPU it is bfloat16)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes drawing clips ahead of the model (default: 0 on the CPU, up to 8 on a GPU); "
        "the training is the same for any number",
    )
    parser.add_argument(
        "--freeze-bn",
        choices=("auto", "yes", "no"),
        default="auto",
        help="keep batch norms in inference mode (auto: yes when fine-tuning with --init)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from swiftcuda.engine import default_device
    from swiftcuda.errors import InputError
    from swiftcuda.train import ClipOptions, TrainOptions, train

    if args.clip_length < 2:
        raise InputError("--clip-length must be at least 2: one given frame and one to predict")
    if args.matching_loss < 0:
        raise InputError(f"--matching-loss {args.matching_loss} is negative: give a weight >= 0 (0 turns it off)")
    if args.workers is not None and args.workers < 0:
        raise InputError(f"--workers {args.workers} is negative: give 0 (draw clips in the training process) or more")
    options = TrainOptions(
        steps=args.steps,
        batch_size=args.batch_size,
        clip=ClipOptions(
            length=args.clip_length,
            max_skip=args.max_skip,
            crop=args.crop,
            max_objects=args.max_objects,
            scale_range=args.scale_range,
            colour_shuffle=args.colour_shuffle,
        ),
        lr=args.lr,
        warmup=args.warmup,
        save_every=args.save_every,
        keep=args.keep,
        seed=args.seed,
        device=args.device or default_device(),
        amp=args.amp == "on" or (args.amp == "auto" and (args.device or default_device()).startswith("cuda")),
        freeze_bn=args.freeze_bn == "yes" or (args.freeze_bn == "auto" and args.init is not None),
        variant=args.variant,
        data_scale=args.data_scale,
        sequences=tuple(args.sequences.split(",")) if args.sequences else None,
        matching_loss=args.matching_loss,
        workers=args.workers,
    )
    losses = train(args.data, args.out, options, init=args.init, resume=args.resume)
    if losses:
        print(f"trained to step {options.steps}; last loss {losses[-1]:.4f}; weights in {args.out / 'model.pt'}")
    else:
        print(f"nothing to do: {args.out} is already at step {options.steps}")
    return 0
