"""Tests of target loading and the per-process split of targets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rosetta_pl.targets import (
    TargetDataModule,
    TargetSet,
    TargetShard,
    convert_image_channels,
    image_files,
    load_image,
    load_targets,
    skimage_photograph,
    stack_images,
)

ZOO = Path(os.environ.get("ROSETTA_ZOO_DIR", Path(__file__).resolve().parents[2] / "shared" / "zoo"))
needs_zoo = pytest.mark.skipif(
    not (ZOO / "mnist_t10k_images.idx3.gz").exists(),
    reason=f"offline zoo folder {ZOO} with the MNIST and CIFAR-10 test images is absent",
)


def test_load_image_rgb_and_gray(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, size=(4, 6), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")

    loaded_rgb = load_image(tmp_path / "rgb.png")
    loaded_gray = load_image(tmp_path / "gray.png")

    assert loaded_rgb.shape == (3, 5, 7)
    assert loaded_gray.shape == (1, 4, 6)
    np.testing.assert_allclose(loaded_rgb.numpy(), rgb.transpose(2, 0, 1) / 255.0, atol=1e-7)
    np.testing.assert_allclose(loaded_gray.numpy()[0], gray / 255.0, atol=1e-7)


def test_load_image_rejects_rgba(tmp_path: Path) -> None:
    Image.new("RGBA", (4, 4)).save(tmp_path / "alpha.png")
    with pytest.raises(ValueError, match=r"mode 'RGBA', which is neither RGB nor gray"):
        load_image(tmp_path / "alpha.png")


def test_image_files_sorts_folder(tmp_path: Path) -> None:
    for name in ("b.png", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in image_files([tmp_path])] == ["a.png", "b.png"]
    with pytest.raises(FileNotFoundError, match=r"missing.png not found"):
        image_files([tmp_path / "missing.png"])


def test_astronaut_face_crop() -> None:
    import skimage.data

    face = skimage_photograph("astronaut_face")
    reference = skimage.data.astronaut()[45:165, 180:300].astype(np.float64) / 255.0
    assert face.shape == (3, 120, 120)
    np.testing.assert_allclose(face.numpy(), reference.transpose(2, 0, 1), atol=1e-7)


def test_lfw_subset_faces() -> None:
    import skimage.data

    face = skimage_photograph("lfw_subset/3")
    assert face.shape == (1, 25, 25)
    np.testing.assert_allclose(face.numpy()[0], skimage.data.lfw_subset()[3], atol=1e-7)
    with pytest.raises(ValueError, match=r"'lfw_subset/200' is out of range"):
        skimage_photograph("lfw_subset/200")
    with pytest.raises(ValueError, match=r"unknown scikit-image target 'moon'"):
        skimage_photograph("moon")


def test_face_targets_resized_rgb() -> None:
    names = ["astronaut_face"] + [f"lfw_subset/{i}" for i in range(5)]
    targets = load_targets("skimage", names=names, size=64, channels=3)
    assert targets.images.shape == (6, 3, 64, 64)
    assert targets.images.dtype == torch.float32
    assert float(targets.images.min()) >= 0.0
    assert float(targets.images.max()) <= 1.0
    # Gray faces become RGB by repeating the channel.
    torch.testing.assert_close(targets.images[1, 0], targets.images[1, 2])
    assert targets.labels.tolist() == [-1] * 6


def test_channel_conversion_luma() -> None:
    rgb = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    gray = convert_image_channels(rgb, 1)
    reference = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    torch.testing.assert_close(gray[:, 0], reference)
    with pytest.raises(ValueError, match=r"neither RGB nor gray"):
        convert_image_channels(torch.rand(1, 4, 4, 4), 3)


def test_stack_images_rejects_bad_targets() -> None:
    with pytest.raises(ValueError, match=r"target two-channel of shape \(2, 4, 4\) is neither"):
        stack_images([torch.rand(2, 4, 4)], ["two-channel"])
    with pytest.raises(ValueError, match=r"different shapes"):
        stack_images([torch.rand(3, 4, 4), torch.rand(3, 5, 5)], ["a", "b"])
    with pytest.raises(ValueError, match=r"no target images"):
        stack_images([], [])


@needs_zoo
def test_mnist_test_labels() -> None:
    targets = load_targets("mnist", count=10, zoo_dir=str(ZOO))
    assert targets.images.shape == (10, 1, 28, 28)
    # The first ten labels of the official MNIST test set.
    assert targets.labels.tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    with pytest.raises(ValueError, match=r"out of range: there are 10000 test images"):
        load_targets("mnist", count=5, start=9998, zoo_dir=str(ZOO))


@needs_zoo
def test_cifar10_test_images() -> None:
    targets = load_targets("cifar10", count=3, start=1, zoo_dir=str(ZOO))
    assert targets.images.shape == (3, 3, 32, 32)
    assert targets.labels.tolist() == [8, 8, 0]


def test_missing_zoo_folder_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"MNIST test images not found"):
        load_targets("mnist", count=2, zoo_dir=str(tmp_path))


def _toy_targets(count: int) -> TargetSet:
    images = torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1).expand(count, 1, 2, 2)
    return TargetSet(images=images.contiguous(), labels=torch.arange(count), names=["x"] * count)


@pytest.mark.parametrize(("count", "world_size", "batch_size"), [(8, 2, 3), (5, 3, 2), (1, 2, 4)])
def test_shards_are_disjoint_and_cover(count: int, world_size: int, batch_size: int) -> None:
    targets = _toy_targets(count)
    seen: list[int] = []
    for rank in range(world_size):
        shard = TargetShard(targets, batch_size, rank, world_size)
        batches = list(shard)
        assert len(batches) == len(shard)
        for batch in batches:
            assert len(batch["index"]) <= batch_size
            torch.testing.assert_close(batch["image"][:, 0, 0, 0], batch["index"].float())
            seen.extend(batch["index"].tolist())
    assert sorted(seen) == list(range(count))


def test_datamodule_without_trainer_yields_all() -> None:
    module = TargetDataModule(source="skimage", names=["astronaut", "camera"], size=16, channels=3)
    batches = list(module.predict_dataloader())
    assert len(batches) == 1
    assert batches[0]["index"].tolist() == [0, 1]
    assert batches[0]["image"].shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"batch_size=0 is invalid"):
        TargetDataModule(batch_size=0)
