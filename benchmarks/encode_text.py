"""Concept-sentence encoding: batches trimmed to their longest real token length vs padded to 77.

Prints JSON with both speeds, the ratio and the largest difference between the two outputs.

    python benchmarks/encode_text.py --n 2000 --model ViT-B-32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import emit, random_backbone

from conceptforest.concepts.template import template_tree


def sentences(n: int) -> list[str]:
    base = [c.sentence for c in template_tree("dog", ["a", "b"]).concepts()]
    return [f"{base[i % len(base)]} ({i})" for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    backbone = random_backbone(args.model)
    texts = sentences(args.n)
    backbone.encode_texts(texts[:32])  # warm-up
    timings = {}
    outputs = {}
    for trim in (False, True):
        started = time.perf_counter()
        outputs[trim] = backbone.encode_texts(texts, batch_size=args.batch_size, trim=trim)
        timings[trim] = time.perf_counter() - started
    emit(
        {
            "benchmark": "encode_text",
            "model": args.model,
            "weights": "random (speed only)",
            "threads": torch.get_num_threads(),
            "sentences": args.n,
            "padded_sentences_per_s": round(args.n / timings[False], 1),
            "trimmed_sentences_per_s": round(args.n / timings[True], 1),
            "speedup": round(timings[False] / timings[True], 2),
            "max_abs_difference": float(np.abs(outputs[True] - outputs[False]).max()),
        }
    )


if __name__ == "__main__":
    main()
