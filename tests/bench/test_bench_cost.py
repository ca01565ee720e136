"""Analytic FLOPs: the paper's numbers (docs/bench.md, "Cost") and a hook count of the real generator."""

from __future__ import annotations

import pytest

from ingan.bench import cost
from ingan.model.config import GeneratorConfig

PAPER = GeneratorConfig()


def test_paper_generator_per_pixel_and_entry():
    assert cost.macs_per_output_pixel(PAPER) == 477_888
    entry = cost.forward_cost(PAPER, (256, 256), (256, 256)).entry_flops / 2
    assert entry == 9_408 * 256 * 256
    assert round(entry / 1e9, 3) == 0.617


# the notes' table: output WxH -> GMAC, GFLOP (training image 256x256, entry conv included)
@pytest.mark.parametrize("w,h,gmac,gflop", [(256, 256, 31.94, 63.9), (640, 360, 110.72, 221.4),
                                             (1280, 720, 441.04, 882.1), (1920, 1080, 991.57, 1983)])
def test_notes_table(w, h, gmac, gflop):
    c = cost.forward_cost(PAPER, (h, w), (256, 256))
    assert round(c.flops / 2e9, 2) == gmac
    assert round(c.flops / 1e9, 1 if gflop < 1000 else 0) == gflop


def test_internal_size_and_folded_entry():
    c = cost.forward_cost(PAPER, (361, 641), (256, 256), entry_executed=False)
    assert c.internal_size == (368, 648)  # the network computes at the next multiple of 8, then crops
    assert c.flops == c.synthesis_flops == 2 * 477_888 * 368 * 648
    assert c.to_dict()["entry_executed"] is False


@pytest.mark.parametrize("config,out_hw,in_hw", [
    (GeneratorConfig(base_channels=4, n_blocks=1), (50, 70), (40, 52)),
    (GeneratorConfig(base_channels=8, n_blocks=2, n_downsampling=2), (33, 47), (30, 20)),
    (PAPER, (64, 72), (48, 56)),
])
def test_formula_matches_hooked_generator(config, out_hw, in_hw):
    torch = pytest.importorskip("torch")
    from ingan.model.generator import Generator

    generator = Generator(config).eval()
    counted = []

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        counted.append(output.shape[2] * output.shape[3] * module.out_channels * module.in_channels * k)

    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        generator(torch.zeros(1, 3, *in_hw), out_hw)
    expected = cost.forward_cost(config, out_hw, in_hw)
    assert 2 * sum(counted) == expected.flops
    assert len(counted) == len(cost.conv_layers(config))


def test_config_read_back_from_the_exported_graph(default_export):
    out_dir, _ = default_export
    for name in ("model.onnx", "model_fp16.onnx"):
        found = cost.config_from_onnx(out_dir / name)
        assert found is not None
        config, entry = found
        assert (config.base_channels, config.n_blocks, config.n_downsampling) == (4, 1, 3)
        assert entry is False  # the baked training image's entry block is constant-folded by the exporter


def test_conv_shapes_that_are_not_ours(tmp_path):
    assert cost.config_from_conv_shapes([(8, 3, 3, 3), (16, 8, 3, 3)]) is None
    assert cost.config_from_conv_shapes([]) is None
    shapes = [layer.weight_shape for layer in cost.conv_layers(PAPER)]
    assert cost.config_from_conv_shapes(shapes) == (GeneratorConfig(spectral_norm=False), True)
    assert cost.config_from_conv_shapes(shapes[1:]) == (GeneratorConfig(spectral_norm=False), False)
    assert cost.config_from_conv_shapes(shapes[2:]) is None
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert cost.config_from_onnx(junk) is None


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
    ("Tesla T4", "T4"),
])
def test_peak_table_names(name, peak):
    assert cost.find_peak(name).name == peak


def test_peak_values_and_override():
    assert cost.peak_tflops("NVIDIA H100 80GB HBM3", "fp16")[0] == 989.4
    assert cost.peak_tflops("NVIDIA H100 80GB HBM3", "bf16")[0] == 989.4
    assert cost.peak_tflops("NVIDIA H100 80GB HBM3", "tf32")[0] == 494.7
    assert cost.peak_tflops("NVIDIA H100 80GB HBM3", "fp32")[0] == 67.0
    assert cost.peak_tflops("NVIDIA H200", "fp16")[0] == 989.4
    assert cost.peak_tflops("NVIDIA A100 80GB PCIe", "fp16")[0] == 312.0
    assert cost.peak_tflops("Some Future GPU", "fp16") == (None, "unknown peak for 'Some Future GPU'; pass --peak-tflops")
    assert cost.peak_tflops("Tesla T4", "bf16")[0] is None
    assert cost.peak_tflops(None, "fp32", override=0.157) == (0.157, "user (--peak-tflops)")
    for peak in cost.PEAKS:
        assert "nvidia" in peak.source.lower()


def test_cost_block():
    c = cost.forward_cost(PAPER, (360, 640), (256, 256))
    block = cost.cost_block(c, 0.001, "NVIDIA H100 80GB HBM3", "fp16", cpu=False, override=None)
    assert block["achieved_tflops"] == pytest.approx(c.flops / 1e-3 / 1e12, rel=1e-5)
    assert block["percent_of_peak"] == pytest.approx(100 * block["achieved_tflops"] / 989.4, rel=1e-4)
    cpu = cost.cost_block(c, 1.7, None, "fp32", cpu=True, override=None)
    assert cpu["peak_tflops"] is None and cpu["percent_of_peak"] is None and cpu["achieved_tflops"] > 0
    assert cost.cost_block(None, 1.0, None, "fp32", cpu=True, override=None)["gflop"] is None
