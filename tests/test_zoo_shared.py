"""Zoo models loaded from the offline weights folder: CIFAR-10 ResNets, LeNet, MNIST DCGAN."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rosetta_pl.zoo import Generator, build

ZOO_DIR = Path(os.environ.get("ROSETTA_ZOO_DIR", Path(__file__).resolve().parents[1] / "../shared/zoo"))
pytestmark = pytest.mark.skipif(
    not (ZOO_DIR / "SHA256SUMS").is_file(),
    reason=f"offline weights folder {ZOO_DIR} is absent; set ROSETTA_ZOO_DIR to run these tests",
)


def read_idx(path: Path, header_bytes: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8)[header_bytes:]


@pytest.fixture(scope="module")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """First 2000 MNIST test digits (B, 1, 28, 28) in [0, 1] and their labels."""
    images = read_idx(ZOO_DIR / "mnist_t10k_images.idx3.gz", 16).reshape(-1, 1, 28, 28)[:2000]
    labels = read_idx(ZOO_DIR / "mnist_t10k_labels.idx1.gz", 8)[:2000]
    return torch.from_numpy(images.copy()).float() / 255.0, torch.from_numpy(labels.astype(np.int64))


@pytest.fixture(scope="module")
def lenet():
    return build("lenet_mnist", weights_dir=str(ZOO_DIR))


def test_lenet_classifies_mnist(lenet, mnist_test) -> None:
    images, labels = mnist_test
    with torch.no_grad():
        predictions = lenet(images).argmax(dim=1)
    accuracy = float((predictions == labels).float().mean())
    assert accuracy >= 0.98


def test_lenet_default_units(lenet) -> None:
    assert lenet.unit_counts == {"convnet.relu1": 6, "convnet.relu3": 16, "convnet.relu5": 120}
    maps = lenet.unit_maps(torch.rand(2, 1, 28, 28))
    assert maps["convnet.relu1"].shape == (2, 6, 28, 28)
    assert maps["convnet.relu5"].shape == (2, 120, 1, 1)
    assert float(maps["convnet.relu3"].min()) >= 0.0


def test_lenet_rgb_becomes_luminance(lenet) -> None:
    rgb = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    luminance = 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
    actual = lenet.preprocess(rgb.float())
    np.testing.assert_allclose(actual.double().numpy(), luminance.numpy(), atol=1e-6)


def test_resnet20_classifies_cifar_images() -> None:
    model = build("cifar10_resnet20", weights_dir=str(ZOO_DIR))
    paths = sorted((ZOO_DIR / "cifar10_test20").glob("cifar10_*.png"))
    assert len(paths) == 20
    images = torch.stack([
        torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
        .permute(2, 0, 1)
        for path in paths
    ])
    labels = torch.tensor([int(path.stem.split("_")[-1]) for path in paths])
    with torch.no_grad():
        correct = int((model(images).argmax(dim=1) == labels).sum())
    assert correct >= 19


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_cifar_resnet_units(depth: int) -> None:
    model = build(f"cifar10_resnet{depth}", weights_dir=str(ZOO_DIR))
    maps = model.unit_maps(torch.rand(1, 3, 32, 32))
    assert model.unit_counts == {"layer1": 16, "layer2": 32, "layer3": 64}
    assert maps["layer1"].shape[-2:] == (32, 32)
    assert maps["layer2"].shape[-2:] == (16, 16)
    assert maps["layer3"].shape[-2:] == (8, 8)
    assert model.weights_sha256 is not None


def test_cifar_resnet_normalisation() -> None:
    model = build("cifar10_resnet20", weights_dir=str(ZOO_DIR))
    images = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    expected = (images - mean) / std
    np.testing.assert_allclose(model.preprocess(images.float()).double().numpy(), expected.numpy(),
                               atol=1e-5)


def test_mnist_dcgan_samples_look_like_digits(lenet) -> None:
    generator = build("mnist_dcgan", weights_dir=str(ZOO_DIR))
    assert isinstance(generator, Generator)
    images = generator.generate(generator.latents(torch.arange(64), seed=0))
    assert images.shape == (64, 1, 28, 28)
    assert float(images.min()) >= 0.0
    assert float(images.max()) <= 1.0
    with torch.no_grad():
        top_probability = lenet(images).exp().max(dim=1).values
    assert float(top_probability.mean()) > 0.9
    assert generator.num_units == 449


def test_mnist_discriminator_units() -> None:
    model = build("mnist_dcgan_disc", weights_dir=str(ZOO_DIR))
    output, maps = model.forward_with_maps(torch.rand(2, 1, 28, 28))
    assert output.shape == (2, 1, 4, 4)
    assert float(output.min()) >= 0.0
    assert float(output.max()) <= 1.0
    assert model.unit_counts == {"main.1": 64, "main.4": 128, "main.7": 256}
    assert maps["main.1"].shape == (2, 64, 32, 32)


def test_weights_dir_from_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ROSETTA_ZOO_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"mnist_lenet\.pth.*MNIST LeNet-5.*ROSETTA_ZOO_DIR"):
        build("lenet_mnist")
    monkeypatch.setenv("ROSETTA_ZOO_DIR", str(ZOO_DIR))
    assert build("lenet_mnist").weights_source == str(ZOO_DIR / "mnist_lenet.pth")


def test_missing_weight_file_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cifar10_resnet32\.th not found.*weights_dir"):
        build("cifar10_resnet32", weights_dir=str(tmp_path))


def test_checksum_mismatch_error(tmp_path) -> None:
    shutil.copy(ZOO_DIR / "mnist_lenet.pth", tmp_path / "mnist_lenet.pth")
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  mnist_lenet.pth\n")
    with pytest.raises(ValueError, match=r"checksum mismatch.*mnist_lenet\.pth.*replace it"):
        build("lenet_mnist", weights_dir=str(tmp_path))


def test_checksum_entry_missing_error(tmp_path) -> None:
    shutil.copy(ZOO_DIR / "mnist_lenet.pth", tmp_path / "mnist_lenet.pth")
    (tmp_path / "SHA256SUMS").write_text("")
    with pytest.raises(ValueError, match=r"mnist_lenet\.pth has no entry"):
        build("lenet_mnist", weights_dir=str(tmp_path))


def test_shared_models_without_weights(tmp_path) -> None:
    model = build("cifar10_resnet44", pretrained=False, weights_dir=str(tmp_path))
    assert model.weights_source == "random initialisation"
    assert model.weights_sha256 is None
