"""Peak RSS of feature extraction at two data-set sizes: streaming means the same peak within ~10 %.

Each size runs in its own subprocess (ru_maxrss is per process). Uses the tiny random backbone so that the
pipeline's own memory, not model compute, is measured. Prints JSON.

    python benchmarks/memory.py --small 5000 --large 20000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import emit

CHILD = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, {bench!r})
from _common import make_jpegs, peak_rss_mb
from conceptforest.concepts.template import template_tree
from conceptforest.features import TINY_RANDOM, extract_features, load_backbone, load_dataset
n = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    root = make_jpegs(Path(tmp) / "images", n, size=(96, 96))
    dataset = load_dataset(root)
    tree = template_tree("toy shape", dataset.labels)
    backbone = load_backbone(TINY_RANDOM, device="cpu")
    _, stats = extract_features(dataset, tree, backbone, Path(tmp) / "run", cache_dir=Path(tmp) / "cache",
                                chunk_size=1024, progress=False)
    print(json.dumps({{"images": n, "peak_rss_mb": round(peak_rss_mb(), 1),
                      "images_per_s": round(stats.images_per_second, 1)}}))
"""


def run(n: int) -> dict[str, float]:
    code = CHILD.format(bench=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {n}-image run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=20000)
    args = parser.parse_args()
    small, large = run(args.small), run(args.large)
    emit(
        {
            "benchmark": "memory",
            "backbone": "conceptforest-tiny-random",
            "small": small,
            "large": large,
            "peak_ratio_large_vs_small": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        }
    )


if __name__ == "__main__":
    main()
