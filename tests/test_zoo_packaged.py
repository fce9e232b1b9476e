"""Zoo models whose weights ship in installed wheels: the face DCGAN and MTCNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import correlate
from torch import nn
from torchvision.utils import save_image

from rosetta_pl.zoo import Generator, UnitModel, build


@pytest.fixture(scope="module")
def face_gan() -> Generator:
    model = build("face_dcgan")
    assert isinstance(model, Generator)
    return model


@pytest.fixture(scope="module")
def onet() -> UnitModel:
    return build("mtcnn_onet")


def hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def test_face_dcgan_default_units(face_gan: Generator) -> None:
    assert face_gan.layers == ["main.2", "main.5", "main.8", "main.11", "main.13"]
    assert face_gan.unit_counts == {"main.2": 512, "main.5": 256, "main.8": 128, "main.11": 64,
                                    "main.13": 3}
    assert face_gan.num_units == 963
    assert face_gan.latent_shape == (100,)
    assert face_gan.weights_source.startswith("gan-face-generate 1.1.1")
    assert face_gan.weights_sha256 is not None
    assert len(face_gan.weights_sha256) == 64


def test_face_dcgan_images_and_maps(face_gan: Generator) -> None:
    latents = face_gan.latents(torch.arange(4), seed=3)
    images, maps = face_gan.generate(latents, return_maps=True)
    assert images.shape == (4, 3, 64, 64)
    assert images.dtype == torch.float32
    assert float(images.min()) >= 0.0
    assert float(images.max()) <= 1.0
    assert {name: tuple(m.shape[2:]) for name, m in maps.items()} == {
        "main.2": (4, 4), "main.5": (8, 8), "main.8": (16, 16), "main.11": (32, 32),
        "main.13": (64, 64)}
    # The tanh output is the image before mapping [-1, 1] to [0, 1].
    expected = images.double() * 2 - 1
    torch.testing.assert_close(maps["main.13"].double(), expected, atol=1e-6, rtol=0)
    assert not any(m.requires_grad for m in maps.values())


def test_face_dcgan_maps_keep_graph(face_gan: Generator) -> None:
    latents = face_gan.latents(torch.arange(2), seed=0).requires_grad_(True)
    _, maps = face_gan.generate(latents, return_maps=True, detach=False)
    maps["main.5"].sum().backward()
    assert latents.grad is not None
    assert float(latents.grad.abs().sum()) > 0
    assert all(p.grad is None for p in face_gan.parameters())


def test_onet_faces_vs_noise(face_gan: Generator, onet: UnitModel, tmp_path) -> None:
    faces = face_gan.generate(face_gan.latents(torch.arange(64), seed=0))
    noise = torch.rand(64, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    face_probability = onet.face_probability(faces)
    noise_probability = onet.face_probability(noise)
    grid_path = tmp_path / "face_samples.png"
    save_image(faces, grid_path, nrow=8)
    assert grid_path.stat().st_size > 0
    assert float(face_probability.mean()) > 0.8
    assert float(noise_probability.mean()) < 0.1


@pytest.mark.parametrize(
    ("name", "units"), [("mtcnn_pnet", 116), ("mtcnn_rnet", 280), ("mtcnn_onet", 576)]
)
def test_mtcnn_default_units(name: str, units: int) -> None:
    model = build(name)
    assert model.num_units == units
    assert all(layer.startswith(("conv", "prelu")) for layer in model.layers)


def test_mtcnn_preprocess_matches_reference(onet: UnitModel) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 96, 96))
    # Area interpolation from 96 to 48 averages 2x2 blocks.
    reference = images.reshape(2, 3, 48, 2, 48, 2).mean(axis=(3, 5))
    reference = (reference * 255.0 - 127.5) / 128.0
    actual = onet.preprocess(torch.from_numpy(images).float())
    assert actual.shape == (2, 3, 48, 48)
    np.testing.assert_allclose(actual.double().numpy(), reference, atol=1e-5)


def test_mtcnn_gray_replicated_to_rgb(onet: UnitModel) -> None:
    gray = torch.rand(2, 1, 48, 48)
    torch.testing.assert_close(onet.preprocess(gray), onet.preprocess(gray.expand(-1, 3, -1, -1)))


def test_pnet_conv1_matches_float64_reference() -> None:
    pnet = build("mtcnn_pnet")
    images = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(1))
    maps = pnet.unit_maps(images)
    assert maps["conv1"].shape == (1, 10, 18, 28)
    x = (images.double().numpy()[0] * 255.0 - 127.5) / 128.0
    weight = pnet.network.conv1.weight.double().numpy()
    bias = pnet.network.conv1.bias.double().numpy()
    reference = np.stack([
        correlate(x, weight[c], mode="valid")[0] + bias[c] for c in range(weight.shape[0])
    ])
    np.testing.assert_allclose(maps["conv1"][0].double().numpy(), reference, atol=1e-4)


def test_pnet_input_size_option() -> None:
    pnet = build("mtcnn_pnet", input_size=24)
    maps = pnet.unit_maps(torch.rand(1, 3, 48, 48))
    assert maps["prelu3"].shape == (1, 32, 7, 7)


def test_mtcnn_rejects_small_pnet_input() -> None:
    pnet = build("mtcnn_pnet")
    with pytest.raises(ValueError, match=r"at least 12x12.*set input_size"):
        pnet.unit_maps(torch.rand(1, 3, 8, 8))


def test_no_hooks_left_after_runs(face_gan: Generator, onet: UnitModel) -> None:
    latents = face_gan.latents(torch.arange(3), seed=1)
    first_images, first_maps = face_gan.generate(latents, return_maps=True)
    second_images, second_maps = face_gan.generate(latents, return_maps=True)
    assert hook_count(face_gan) == 0
    assert second_maps.keys() == first_maps.keys()
    for name in first_maps:
        torch.testing.assert_close(second_maps[name], first_maps[name], rtol=0, atol=0)
    onet.unit_maps(first_images)
    counts = onet.unit_counts
    onet.unit_maps(second_images)
    assert onet.unit_counts == counts
    assert hook_count(onet) == 0


def test_models_frozen_in_eval_mode(face_gan: Generator) -> None:
    face_gan.train()
    assert not face_gan.training
    assert not any(module.training for module in face_gan.modules())
    assert not any(p.requires_grad for p in face_gan.parameters())


def test_onet_input_gradient_flows(onet: UnitModel) -> None:
    images = torch.rand(2, 3, 48, 48, requires_grad=True)
    onet(images)[:, 1].sum().backward()
    assert images.grad is not None
    assert float(images.grad.abs().sum()) > 0
