"""`python -m ingan.train.calibrate CKPT`: fit (or drop) a checkpoint's colour calibration.

`ingan-train` fits it into every checkpoint it saves; this is for checkpoints written
before that existed, or with --no-colour-calibration. The fit reads only the checkpoint
(its raw generator and stored training image), so running it twice gives the same file.
"""

from __future__ import annotations

from pathlib import Path

import click

from ingan.cli.common import user_errors


def calibrate_checkpoint(source: str | Path, target: str | Path | None = None, remove: bool = False) -> dict | None:
    """Write `source` with a freshly fitted calibration (or none) to `target` (default: in place).

    Returns the calibration written (its dict), or None when removed. The write is atomic.
    """
    import torch

    from ingan.model.checkpoint import load_checkpoint, save_checkpoint
    from ingan.model.generator import fit_colour_calibration
    from ingan.train.trainer import image_to_tensor

    ckpt = load_checkpoint(source, drop_colour_calibration=True)  # a damaged one is replaced anyway
    payload = dict(ckpt.payload)
    calibration = None
    if not remove:
        generator = ckpt.build_generator("cpu")
        image = image_to_tensor(ckpt.image, torch.device("cpu"))
        calibration = fit_colour_calibration(generator, image, ckpt.iteration).to_dict()
        payload["colour_calibration"] = calibration
    save_checkpoint(target or source, payload)
    return calibration


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the result here instead of replacing CHECKPOINT (atomically) in place.")
@click.option("--remove", is_flag=True, help="Drop the calibration: outputs become the raw tanh output again.")
def main(checkpoint: Path, out: Path | None, remove: bool) -> None:
    """Fit CHECKPOINT's per-channel output colour calibration (docs/model.md).

    One gain and offset per RGB channel, chosen so the 1x retarget has the training
    image's per-channel mean and standard deviation; every size, the ONNX export and
    every backend then use it. The trained weights are not changed.
    """
    with user_errors():
        result = calibrate_checkpoint(checkpoint, out, remove)
    where = out or checkpoint
    if result is None:
        click.echo(f"{where}: colour calibration removed")
    else:
        from ingan.model.calibration import ColourCalibration

        click.echo(f"{where}: colour calibration {ColourCalibration.from_dict(result).describe()}")


if __name__ == "__main__":
    main()
