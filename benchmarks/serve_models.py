"""Make N small exported generators for `ingan-bench serve` (benchmarks/results/*-cpu-serve).

Each is a tiny InGAN generator (4 base channels, one residual block: not the paper's
architecture) trained for a few steps on its own crop of the example image, then exported
to ONNX with ingan-export's pipeline (validated as usual) with the size range 16x16 ..
512x512. Tiny on purpose: the load test measures serving (HTTP, routing, loading,
eviction, encoding), which a paper-size generator would bury under ~0.4 s of convolutions
per 256x256 request on a 2-core CPU (benchmarks/results/2026-11-26-cpu).

    python benchmarks/serve_models.py -o /tmp/serve_models -n 10      # ~15 s per model here
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ingan.export.pipeline import ExportOptions, export_checkpoint
from ingan.imageio import load_image
from ingan.model.config import DiscriminatorConfig, GeneratorConfig
from ingan.train.config import RunOptions, TrainConfig
from ingan.train.trainer import Trainer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hubble" / "hubble_xdf.png"
CROP = (48, 64)  # (height, width) of each model's training image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder for NAME.onnx + NAME.onnx.json")
    parser.add_argument("-n", "--count", type=int, default=10, help="how many models (default 10)")
    args = parser.parse_args()
    image = load_image(EXAMPLE).pixels
    config = TrainConfig(preset="tiny", iters=4, crop_size=32, curriculum_iters=2, lr_decay_start=4,
                         inverse_start=10, generator=GeneratorConfig(base_channels=4, n_blocks=1),
                         discriminator=DiscriminatorConfig(base_channels=4))
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoints = Path(tempfile.mkdtemp(prefix="serve_models_ckpt_"))  # only the exports are kept
    for index in range(args.count):
        started = time.perf_counter()
        top = (index * 29) % (image.shape[0] - CROP[0])
        left = (index * 53) % (image.shape[1] - CROP[1])
        crop = image[top:top + CROP[0], left:left + CROP[1]].copy()
        name = f"crop{index:02d}"
        trainer = Trainer(crop, config, RunOptions(device="cpu"), image_name=f"{EXAMPLE.name}[{top}:,{left}:]")
        for _ in range(3):
            trainer.step()
        checkpoint = trainer.save(checkpoints / f"{name}.pt")
        export_checkpoint(checkpoint, ExportOptions(out_dir=args.out, name=name, engine="skip", min_size=(16, 16),
                                                    max_size=(512, 512)))
        print(f"{args.out / name}.onnx in {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
