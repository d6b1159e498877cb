"""Memory updates and J&F of the PAM trigger against the official every-5th-frame schedule.

Runs both memory modes over every sequence of a DAVIS-layout set (by default a set generated from
the bundled masks held out of the demo training) and prints, per mode, J&F and how many frames went
into the long-term memory. Used to choose the PAM defaults (swiftcuda.PamOptions)::

    python benchmarks/pam_vs_official.py --data heldout/ --weights demo
    python benchmarks/pam_vs_official.py --data heldout/ --update-threshold 0.8 --max-gap 10
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from swiftcuda import PamOptions, Segmenter, load_model
from swiftcuda.data import DavisDataset
from swiftcuda.io.frames import read_image
from swiftcuda.io.masks import read_mask
from swiftcuda.metrics import count_objects, score_labels, statistics


def run_sequence(segmenter: Segmenter, sequence) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels and ground truth of every frame, and the number of long-term updates after frame 0."""
    predicted, truth, updates = [], [], 0
    for index, path in enumerate(sequence.image_paths):
        mask = read_mask(sequence.annotation_paths[path.stem])
        probs = segmenter.step(read_image(path), mask=mask if index == 0 else None)
        predicted.append(segmenter.to_labels(probs).numpy().astype(np.uint8))
        truth.append(mask)
        if index >= 2 and segmenter.last_memorized is not None:
            updates += 1
    return np.stack(predicted), np.stack(truth), updates


def j_and_f(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean over objects of (J-Mean + F-Mean) / 2, first and last frames excluded."""
    objects = count_objects(truth[0])
    j, f = score_labels(truth[1:-1], predicted[1:-1], objects)
    return float(np.mean([(statistics(j[o]).mean + statistics(f[o]).mean) / 2 for o in range(objects)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="DAVIS-layout root")
    parser.add_argument("--set", default="val")
    parser.add_argument("--weights", default="demo")
    defaults = PamOptions()
    for field in dataclasses.fields(PamOptions):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(getattr(defaults, field.name)),
            default=getattr(defaults, field.name),
        )
    args = parser.parse_args()
    options = PamOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PamOptions)})
    model = load_model(args.weights, dtype=torch.float32)
    dataset = DavisDataset(args.data, args.set)
    print(f"PAM options: {options}")
    print("| sequence | frames | official J&F | official updates | PAM J&F | PAM updates |")
    print("| --- | --- | --- | --- | --- | --- |")
    totals = {"official": [0.0, 0], "pam": [0.0, 0]}
    for name in dataset.sequences:
        sequence = dataset.sequence(name)
        row = [name, str(len(sequence))]
        for memory in ("official", "pam"):
            with torch.inference_mode():
                predicted, truth, updates = run_sequence(Segmenter(model, memory=memory, pam=options), sequence)
            score = j_and_f(predicted, truth)
            totals[memory][0] += score
            totals[memory][1] += updates
            row += [f"{score:.3f}", str(updates)]
        print("| " + " | ".join(row) + " |", flush=True)
    count = len(dataset.sequences)
    print(
        f"| mean / total | | {totals['official'][0] / count:.3f} | {totals['official'][1]} | "
        f"{totals['pam'][0] / count:.3f} | {totals['pam'][1]} |"
    )


if __name__ == "__main__":
    main()
