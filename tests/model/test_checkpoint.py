import pickle

import pytest
import torch

from ingan.errors import CheckpointError
from ingan.model.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from ingan.train.config import RunOptions
from ingan.train.trainer import Trainer


@pytest.fixture
def payload(image, tiny_config):
    trainer = Trainer(image, tiny_config, RunOptions(device="cpu"))
    return trainer.state()


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_missing_and_folder_and_empty(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match=r"is not a file \(a folder\)"):
        load_checkpoint(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "x.pt"
    path.write_text("hello, I am text")
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a PyTorch checkpoint"):
        load_checkpoint(path)


@pytest.mark.slow
def test_truncated_file(tmp_path, payload):
    path = save_checkpoint(tmp_path / "ckpt.pt", payload)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(path)


def test_code_in_the_file_is_never_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ingan-checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "p.pt"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="not an ingan checkpoint"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path, payload):
    path = tmp_path / "new.pt"
    torch.save({**payload, "format": "ingan-checkpoint", "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="newer than this ingan supports.*upgrade"):
        load_checkpoint(path)


def test_schema_violations(tmp_path, payload):
    bad = {**payload, "format": "ingan-checkpoint", "format_version": 1}
    bad.pop("image")
    torch.save(bad, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="missing 'image'"):
        load_checkpoint(tmp_path / "a.pt")
    wrong = {**payload, "format": "ingan-checkpoint", "format_version": 1, "iteration": "ten"}
    torch.save(wrong, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="'iteration' has type str"):
        load_checkpoint(tmp_path / "b.pt")


@pytest.mark.slow
def test_weights_that_do_not_match_the_config(tmp_path, payload):
    odd = {**payload, "format": "ingan-checkpoint", "format_version": 1,
           "generator_config": {**payload["generator_config"], "base_channels": 8}}
    torch.save(odd, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"has shape \[4(, 3, 7, 7)?\], its config needs \[8(, 3, 7, 7)?\]"):
        load_checkpoint(tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="its config needs"):
        save_checkpoint(tmp_path / "odd2.pt", odd)  # never written either
    assert not (tmp_path / "odd2.pt").exists()
    fewer = {**payload, "generator_config": {**payload["generator_config"], "n_blocks": 2}}
    torch.save({**fewer, "format": "ingan-checkpoint", "format_version": 1}, tmp_path / "fewer.pt")
    with pytest.raises(CheckpointError, match=r"do not match its architecture config \(\d+ missing, e.g. 'bottleneck.1."):
        load_checkpoint(tmp_path / "fewer.pt")


FORGED_LOADER = """
import resource, sys
limit = 1536 * 2**20  # far below what the forged config would allocate (~309 GB)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from click.testing import CliRunner
from ingan.{module} import main
result = CliRunner().invoke(main, sys.argv[1:])
print(result.output)
sys.exit(result.exit_code)
"""


@pytest.mark.slow
@pytest.mark.parametrize("module, args", [("export.cli", ["-o", "{out}"]), ("runtime.cli", ["-o", "{out}/x.png"])])
def test_a_forged_config_is_refused_before_any_large_allocation(tmp_path, payload, module, args):
    """A small file whose config asks for a huge generator (each field within its range)."""
    import subprocess
    import sys

    forged = {**payload, "format": "ingan-checkpoint", "format_version": 1,
              "generator_config": {**payload["generator_config"], "base_channels": 1024, "n_blocks": 64}}
    torch.save(forged, tmp_path / "forged.pt")
    argv = [sys.executable, "-c", FORGED_LOADER.format(module=module), str(tmp_path / "forged.pt"),
            *[a.format(out=tmp_path / "out") for a in args]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(lines) == 1 and "generator weights do not match its architecture config" in lines[0], lines
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, message", [
    ("base_channels", 10**6, "base_channels <= 1024"),
    ("base_channels", True, "must be integers"),
    ("spectral_norm", "yes", "spectral_norm a bool"),
])
def test_absurd_generator_config_is_refused_before_building(tmp_path, payload, field, value, message):
    bad = {**payload, "format": "ingan-checkpoint", "format_version": 1,
           "generator_config": {**payload["generator_config"], field: value}}
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.pt")


def test_non_finite_weights_and_huge_scale_ranges_are_refused(tmp_path, payload):
    weights = dict(payload["generator"])
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    torch.save({**payload, "format": "ingan-checkpoint", "format_version": 1, "generator": weights}, tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="holds NaN or infinite values"):
        load_checkpoint(tmp_path / "n.pt")
    torch.save({**payload, "format": "ingan-checkpoint", "format_version": 1, "scale_range": [0.15, 1000.0]},
               tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="invalid scale range"):
        load_checkpoint(tmp_path / "s.pt")


def test_an_image_passed_as_checkpoint_is_named_as_such(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "photo.png")
    with pytest.raises(CheckpointError, match="is a PNG image, not a checkpoint; pass the ckpt.pt"):
        load_checkpoint(tmp_path / "photo.png")
