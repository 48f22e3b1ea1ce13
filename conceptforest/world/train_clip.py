"""Train the world CLIP: a small open_clip model, contrastively, on world creatures and captions of their parts.

Run ``python -m conceptforest.world.train_clip --out DIR`` (about 15 minutes on 2 CPU cores with the defaults;
deterministic for a seed and thread count). It writes an open_clip ``local-dir:`` folder: ``open_clip_config.json``,
``open_clip_model.safetensors`` (fp16) and ``training.json`` (settings, data sizes, steps, time, final metrics).

The data: creatures with every slot drawn uniformly, none showing a held-out combination, drawn in pairs: a
creature and its twin with one slot changed (a hard negative that teaches which part a value belongs to). Each
caption names the changed slot and sometimes one more, in one of four phrasings; class names never appear.

One departure from plain CLIP training: the contrastive targets are every caption that is *true* of an image (and
every image a caption is true of), not only the diagonal. With a few values per slot, many captions in a batch
are true of many images; the plain loss would push those apart.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from conceptforest._version import package_version
from conceptforest.atomic import atomic_write_text
from conceptforest.world.captions import caption
from conceptforest.world.clip_quality import attribute_accuracy, held_out_creatures, seen_creatures
from conceptforest.world.render import Creature, render
from conceptforest.world.spec import AttributeKey, WorldSpec, load_world

__all__ = ["MODEL_CONFIG", "TrainSettings", "main", "train_world_clip"]

IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
MODEL_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
    "text_cfg": {"context_length": 48, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
    "quick_gelu": False,
}
SYNTHETIC_NOTE = (
    "SYNTHETIC WORLD: trained only on conceptforest's toy creature world; it sees those drawings, not photos."
)


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides the trained weights."""

    steps: int = 2000
    batch_size: int = 256  # half creatures, half their one-slot twins
    pool_pairs: int = 20000  # pre-rendered pairs the batches are drawn from
    learning_rate: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    render_size: int = 112
    second_slot_rate: float = 0.5  # share of captions that name a second slot
    eval_images: int = 1500
    seed: int = 0


@dataclass
class Pool:
    """Pre-rendered training pairs: uint8 images (2n, 3, s, s); rows n+i are the twins of rows i."""

    images: torch.Tensor
    creatures: list[Creature]
    changed: list[AttributeKey]  # the slot each twin changes
    codes: np.ndarray  # (2n, slots): each creature's value index in every slot of spec.varied_slots()


def _twin(spec: WorldSpec, creature: Creature, rng: np.random.Generator) -> tuple[Creature, AttributeKey]:
    slots = spec.varied_slots()
    while True:
        key = slots[int(rng.integers(len(slots)))]
        others = [v for v in spec.values(key) if v != creature.values[key]]
        twin = creature.with_value(key, others[int(rng.integers(len(others)))])
        if not spec.is_held_out(twin.values):
            return twin, key


def _to_tensor(creatures: Sequence[Creature], render_size: int, image_size: int) -> torch.Tensor:
    """Render and resize as open_clip's preprocessing does (bicubic; the images are square, so no crop)."""
    arrays = [
        np.asarray(render(c, render_size).resize((image_size, image_size), Image.Resampling.BICUBIC)) for c in creatures
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def build_pool(spec: WorldSpec, settings: TrainSettings, *, progress: bool = True) -> Pool:
    rng = np.random.default_rng(settings.seed)
    bases = seen_creatures(spec, settings.pool_pairs, int(rng.integers(2**31)))
    twins, changed = [], []
    for creature in bases:
        twin, key = _twin(spec, creature, rng)
        twins.append(twin)
        changed.append(key)
    creatures = bases + twins
    size = MODEL_CONFIG["vision_cfg"]["image_size"]
    chunks = []
    for start in tqdm(range(0, len(creatures), 1000), desc="render", disable=not progress, unit="k images"):
        chunks.append(_to_tensor(creatures[start : start + 1000], settings.render_size, size))
    slots = spec.varied_slots()
    codes = np.array([[spec.values(k).index(c.values[k]) for k in slots] for c in creatures], dtype=np.int8)
    return Pool(torch.cat(chunks), creatures, changed, codes)


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def _batch(
    spec: WorldSpec, pool: Pool, settings: TrainSettings, rng: np.random.Generator
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Images, captions and the truth matrix (caption i is true of image j) of one batch of pairs."""
    n = len(pool.changed)
    pairs = rng.choice(n, size=settings.batch_size // 2, replace=False)
    rows = np.concatenate([pairs, pairs + n])
    creatures = [pool.creatures[int(r)] for r in rows]
    slot_sets: list[list[AttributeKey]] = []
    for pair in pairs:
        keys = [pool.changed[int(pair)]]
        if rng.random() < settings.second_slot_rate:
            slots = [k for k in spec.varied_slots() if k != keys[0]]
            keys.append(slots[int(rng.integers(len(slots)))])
        slot_sets.append(keys)
    slot_sets = slot_sets + slot_sets  # the twin's caption names the same slots, with its own values
    captions = [caption(c, keys, rng) for c, keys in zip(creatures, slot_sets, strict=True)]
    slots = spec.varied_slots()
    codes = pool.codes[rows]
    truth = np.ones((len(rows), len(rows)), dtype=bool)
    for i, keys in enumerate(slot_sets):
        for key in keys:
            column = slots.index(key)
            truth[i] &= codes[:, column] == codes[i, column]
    return normalise(pool.images[torch.from_numpy(rows)]), captions, torch.from_numpy(truth).float()


def soft_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy with every true (caption, image) pair as a target."""
    logits = scale * text @ image.T  # (captions, images)
    to_images = truth / truth.sum(dim=1, keepdim=True)
    to_texts = (truth / truth.sum(dim=0, keepdim=True)).T
    loss_t = -(to_images * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_i = -(to_texts * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (loss_t + loss_i) / 2


def _learning_rate(step: int, settings: TrainSettings) -> float:
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def create_model(seed: int) -> Any:
    import open_clip

    torch.manual_seed(seed)
    return open_clip.CLIP(**MODEL_CONFIG)


def create_tokenizer() -> Any:
    """open_clip's CLIP tokenizer at the world CLIP's context length (what a local-dir: load gives)."""
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32", context_length=MODEL_CONFIG["text_cfg"]["context_length"])


def _encoders(model: Any, settings: TrainSettings) -> tuple[Any, Any]:

    tokenizer = create_tokenizer()
    size = MODEL_CONFIG["vision_cfg"]["image_size"]

    @torch.inference_mode()
    def encode_images(creatures: Sequence[Creature]) -> np.ndarray:
        out = [
            model.encode_image(
                normalise(_to_tensor(creatures[i : i + 256], settings.render_size, size)), normalize=True
            )
            for i in range(0, len(creatures), 256)
        ]
        return torch.cat(out).numpy()

    @torch.inference_mode()
    def encode_texts(texts: Sequence[str]) -> np.ndarray:
        return model.encode_text(tokenizer(list(texts)), normalize=True).numpy()  # type: ignore[no-any-return]

    return encode_images, encode_texts


def evaluate(model: Any, spec: WorldSpec, settings: TrainSettings) -> dict[str, Any]:
    """Zero-shot attribute accuracy on fresh creatures and on the held-out combinations."""
    model.eval()
    encode_images, encode_texts = _encoders(model, settings)
    seen = attribute_accuracy(
        spec, seen_creatures(spec, settings.eval_images, settings.seed + 1001), encode_images, encode_texts
    )
    held = attribute_accuracy(
        spec, held_out_creatures(spec, settings.eval_images, settings.seed + 2002), encode_images, encode_texts
    )
    model.train()
    return {"seen_combinations": seen.as_dict(), "held_out_combinations": held.as_dict()}


def _train_steps(model: Any, spec: WorldSpec, pool: Pool, settings: TrainSettings, progress: bool) -> list[float]:

    tokenizer = create_tokenizer()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embedding" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learning_rate,
    )
    rng = np.random.default_rng(settings.seed + 1)
    losses: list[float] = []
    bar = tqdm(range(settings.steps), desc="train", disable=not progress, unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, settings)
        images, captions, truth = _batch(spec, pool, settings, rng)
        image = model.encode_image(images, normalize=True)
        text = model.encode_text(tokenizer(captions), normalize=True)
        loss = soft_clip_loss(image, text, model.logit_scale.exp(), truth)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    return losses


def save_world_clip(model: Any, out: Path, record: dict[str, Any]) -> Path:
    """The open_clip ``local-dir:`` folder: config, fp16 safetensors, and the training record."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": MODEL_CONFIG,
        "preprocess_cfg": {"mean": list(IMAGE_MEAN), "std": list(IMAGE_STD)},
        "conceptforest": {"synthetic_world": True, "note": SYNTHETIC_NOTE},
    }
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(out / "open_clip_model.safetensors"))
    atomic_write_text(out / "open_clip_config.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(out / "training.json", json.dumps(record, indent=2) + "\n")
    return out


def train_world_clip(out: str | Path, settings: TrainSettings, *, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate and save the world CLIP; returns the training record (also ``out/training.json``)."""
    spec = load_world()
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    pool = build_pool(spec, settings, progress=progress)
    render_seconds = time.perf_counter() - started
    model = create_model(settings.seed)
    model.train()
    losses = _train_steps(model, spec, pool, settings, progress)
    train_seconds = time.perf_counter() - started - render_seconds
    metrics = evaluate(model, spec, settings)
    record = {
        "what": SYNTHETIC_NOTE,
        "settings": asdict(settings),
        "model_config": MODEL_CONFIG,
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {
            "pool_images": len(pool.creatures),
            "samples_seen": settings.steps * settings.batch_size,
            "held_out_combinations": spec.held_out_combinations,
            "world_classes_used": False,
        },
        "final_loss": round(float(np.mean(losses[-50:])), 4),
        "seconds": {"render": round(render_seconds, 1), "train": round(train_seconds, 1)},
        "metrics": metrics,
        "made_by": {
            "package_version": package_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "command": " ".join(["python -m conceptforest.world.train_clip", *sys.argv[1:]]),
        },
    }
    save_world_clip(model, Path(out), record)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conceptforest.world.train_clip",
        description="Train the small CLIP of conceptforest's synthetic creature world (toy world, not photos).",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the open_clip local-dir: model")
    defaults = TrainSettings()
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step (even)")
    parser.add_argument("--pool-pairs", type=int, default=defaults.pool_pairs, help="pre-rendered pairs")
    parser.add_argument("--eval-images", type=int, default=defaults.eval_images, help="images per evaluation")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of data and weights")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    if args.batch_size < 4 or args.batch_size % 2 or args.pool_pairs < args.batch_size // 2:
        parser.error("--batch-size must be even and >= 4, and --pool-pairs at least half of it")
    settings = TrainSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        pool_pairs=args.pool_pairs,
        eval_images=args.eval_images,
        seed=args.seed,
        warmup_steps=min(defaults.warmup_steps, max(1, args.steps // 10)),
    )
    record = train_world_clip(args.out, settings, progress=not args.no_progress)
    print(json.dumps({"out": str(args.out), "metrics": record["metrics"], "seconds": record["seconds"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
