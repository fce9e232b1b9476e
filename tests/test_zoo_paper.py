"""Models with download loaders, built here without weights: timm, open_clip, DINO ResNet-50, BigGAN."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from rosetta_pl.zoo import Generator, build
from rosetta_pl.zoo.generators.biggan import CHANNEL_WIDTH, LAYER_TABLE


@pytest.fixture(scope="module")
def vit():
    return build("timm:vit_base_patch16_224.dino", pretrained=False)


@pytest.fixture(scope="module")
def biggan() -> Generator:
    model = build("biggan_deep_256", pretrained=False, truncation=0.4, class_ids=[207, 980])
    assert isinstance(model, Generator)
    return model


def test_timm_resnet50_units() -> None:
    model = build("timm:resnet50", pretrained=False)
    assert model.layers == ["layer1", "layer2", "layer3", "layer4"]
    assert model.num_units == 3840
    maps = model.unit_maps(torch.rand(1, 3, 64, 96))
    assert maps["layer1"].shape == (1, 256, 16, 24)
    assert maps["layer4"].shape == (1, 2048, 2, 3)


def test_vit_units_on_patch_grid(vit) -> None:
    assert len(vit.layers) == 12
    assert vit.layers[0] == "blocks.0.mlp.act"
    assert vit.num_units == 36864
    square = vit.unit_maps(torch.rand(1, 3, 224, 224))
    wide = vit.unit_maps(torch.rand(1, 3, 224, 320))
    assert square["blocks.11.mlp.act"].shape == (1, 3072, 14, 14)
    assert wide["blocks.0.mlp.act"].shape == (1, 3072, 14, 20)


def test_vit_rounds_to_patch_size(vit) -> None:
    network_input = vit.preprocess(torch.rand(1, 1, 100, 90))
    assert network_input.shape == (1, 3, 96, 96)


def test_vit_token_maps_match_tokens(vit) -> None:
    images = torch.rand(1, 3, 32, 48)
    maps = vit.unit_maps(images)
    captured: list[torch.Tensor] = []
    handle = vit.network.blocks[3].mlp.act.register_forward_hook(
        lambda module, inputs, output: captured.append(output.detach())
    )
    try:
        with torch.no_grad():
            vit(images)
    finally:
        handle.remove()
    tokens = captured[0]  # (1, 1 + 2 * 3, 3072) with one class token
    assert tokens.shape[1] == 7
    torch.testing.assert_close(maps["blocks.3.mlp.act"][0, :, 1, 2], tokens[0, 1 + 1 * 3 + 2])


def test_timm_unknown_model() -> None:
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet5000'"):
        build("timm:resnet5000", pretrained=False)


def test_timm_missing_weights_path(tmp_path) -> None:
    missing = tmp_path / "resnet50.safetensors"
    with pytest.raises(FileNotFoundError, match=r"resnet50\.safetensors not found.*weights_path"):
        build("timm:resnet50", weights_path=str(missing))


def test_timm_local_weights_file(tmp_path) -> None:
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), str(path))
    model = build("timm:resnet18", weights_path=str(path))
    torch.testing.assert_close(model.network.conv1.weight, source.conv1.weight)
    assert model.weights_sha256 is not None


@pytest.mark.slow
def test_open_clip_rn50_units() -> None:
    model = build("open_clip:RN50", pretrained=False)
    assert model.layers == ["layer1", "layer2", "layer3", "layer4"]
    maps = model.unit_maps(torch.rand(1, 3, 100, 120))
    assert maps["layer4"].shape == (1, 2048, 7, 7)
    assert model.num_units == 3840


def test_open_clip_unknown_tag() -> None:
    with pytest.raises(ValueError, match=r"no pretrained tag 'nope' for RN50.*openai"):
        build("open_clip:RN50", pretrained_tag="nope")


def test_dino_resnet50_needs_weights_path() -> None:
    with pytest.raises(FileNotFoundError, match=r"dl\.fbaipublicfiles\.com/dino.*weights_path"):
        build("dino_resnet50")


def test_dino_resnet50_local_state_dict(tmp_path) -> None:
    from torchvision.models import resnet50

    backbone = resnet50(weights=None)
    del backbone.fc
    state_dict = {key: value for key, value in backbone.state_dict().items()}
    path = tmp_path / "dino_resnet50_pretrain.pth"
    torch.save(state_dict, path)
    model = build("dino_resnet50", weights_path=str(path))
    torch.testing.assert_close(model.network.layer4[2].conv3.weight, backbone.layer4[2].conv3.weight)
    assert model.num_units == 3840
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 2048)


def test_biggan_units_match_layer_table(biggan: Generator) -> None:
    # conv_0 to conv_2 have a quarter of the block's input width, conv_3 its output width.
    expected = sum(3 * (CHANNEL_WIDTH * width_in // 4) + CHANNEL_WIDTH * width_out
                   for _, width_in, width_out in LAYER_TABLE)
    assert len(biggan.layers) == 4 * len(LAYER_TABLE)
    assert biggan.num_units == expected


def test_biggan_generates_256_images(biggan: Generator) -> None:
    images, maps = biggan.generate(biggan.latents(torch.arange(1), seed=0), return_maps=True)
    assert images.shape == (1, 3, 256, 256)
    assert bool(images.isfinite().all())
    assert float(images.min()) >= 0.0
    assert float(images.max()) <= 1.0
    assert maps["generator.layers.12.conv_3"].shape == (1, 128, 256, 256)


def test_biggan_latents(biggan: Generator) -> None:
    latents = biggan.latents(torch.arange(50), seed=2)
    assert latents.shape == (50, 1128)
    z, classes = latents[:, :128], latents[:, 128:]
    assert float(z.abs().max()) <= 2 * 0.4 + 1e-6
    assert torch.equal(classes.sum(dim=1), torch.ones(50))
    assert set(classes.argmax(dim=1).tolist()) == {207, 980}
    halves = torch.cat([biggan.latents(torch.arange(25), seed=2),
                        biggan.latents(torch.arange(25, 50), seed=2)])
    torch.testing.assert_close(halves, latents, rtol=0, atol=0)


def test_biggan_rejects_truncation_above_one() -> None:
    with pytest.raises(ValueError, match=r"truncation must be in \(0, 1\], got 1\.5"):
        build("biggan_deep_256", pretrained=False, truncation=1.5)


def test_biggan_rejects_bad_class_ids() -> None:
    with pytest.raises(ValueError, match=r"class_ids .* \[1000\]"):
        build("biggan_deep_256", pretrained=False, class_ids=[3, 1000])


def test_biggan_missing_weights_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"biggan-deep-256 pytorch_model\.bin"):
        build("biggan_deep_256", weights_path=str(tmp_path / "pytorch_model.bin"))


def build_offline(name: str) -> subprocess.CompletedProcess:
    """Build ``name`` with pretrained weights in a subprocess whose hub client is offline."""
    code = f"from rosetta_pl.zoo import build; build({name!r})"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                          text=True, timeout=300)


def test_timm_failed_download_names_cache() -> None:
    result = build_offline("timm:resnet18")
    assert result.returncode != 0
    assert "RuntimeError: failed to load pretrained weights of timm model 'resnet18'" in result.stderr
    assert "cache folder" in result.stderr


@pytest.mark.slow
def test_open_clip_failed_download_names_cache() -> None:
    result = build_offline("open_clip:RN50")
    assert result.returncode != 0
    assert "RuntimeError: failed to load open_clip RN50 weights 'openai'" in result.stderr
    assert "cache folder" in result.stderr
