"""Copy an `ingan-demo` run's pictures into docs/images/ at README-friendly sizes.

    ingan-demo -o runs/demo && python benchmarks/readme_images.py runs/demo

The README shows the demo's real outputs; this keeps the repository small (JPEG q85, the
collage and the sweep animation at half size) and names the files the README links. It
prints the demo's quality table so the README's numbers can be checked against it.
Each file is written to a temporary name and renamed, so a failed run leaves the old set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageSequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingan.fsutil import atomic_path  # noqa: E402

JPEG_QUALITY = 85


def _atomic_save(image: Image.Image, target: Path, **save_args: object) -> None:
    with atomic_path(target) as tmp:
        image.save(tmp, **save_args)


def _jpeg(source: Path, target: Path, scale: float = 1.0) -> None:
    with Image.open(source) as im:
        im = im.convert("RGB")
        if scale != 1.0:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        _atomic_save(im, target, format="JPEG", quality=JPEG_QUALITY, optimize=True)


def _gif_half(source: Path, target: Path) -> None:
    with Image.open(source) as im:
        duration = im.info.get("duration", 100)
        size = (im.width // 2, im.height // 2)
        frames = [f.convert("RGB").resize(size, Image.LANCZOS) for f in ImageSequence.Iterator(im)]
    frames = [f.quantize(colors=256, method=Image.Quantize.MEDIANCUT) for f in frames]
    _atomic_save(frames[0], target, format="GIF", save_all=True, append_images=frames[1:],
                 duration=duration, loop=0, optimize=True)


def _quality_table(run: Path) -> list[str]:
    report = json.loads((run / "quality" / "quality.json").read_text())
    lines = []
    for result in report["results"]:
        for method in result["methods"].values():
            lines.append(f"{result['size_text']:>9}  {method['label']:<26} SWD {method['swd']:.3f}  "
                         f"coherence {method['coherence']:.3f}  completeness {method['completeness']:.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="an ingan-demo output folder (its index.md's folder)")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images", help="target folder")
    args = parser.parse_args(argv)
    run: Path = args.run
    wanted = {
        "input.png": ("demo_input.jpg", 1.0),
        "collage.png": ("demo_collage.jpg", 0.5),
        "quality/side_by_side.png": ("demo_side_by_side.jpg", 1.0),
    }
    retargets = sorted(run.glob("retarget_*.png"))
    missing = [name for name in [*wanted, "sweep.gif", "quality/quality.json"] if not (run / name).is_file()]
    if missing or not retargets:
        print(f"error: '{run}' is not a complete ingan-demo folder (missing: "
              f"{', '.join(missing) or 'retarget_*.png'}); run `ingan-demo -o {run}` first",
              file=sys.stderr)
        return 1
    wanted.update({p.name: (f"demo_{p.stem}.jpg", 1.0) for p in retargets})
    args.images.mkdir(parents=True, exist_ok=True)
    for source, (target, scale) in wanted.items():
        _jpeg(run / source, args.images / target, scale)
    _gif_half(run / "sweep.gif", args.images / "demo_sweep.gif")
    for name in sorted({t for t, _ in wanted.values()} | {"demo_sweep.gif"}):
        print(f"{args.images / name}  {(args.images / name).stat().st_size / 1024:.0f} KiB")
    print("\n".join(_quality_table(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
