"""Target images for inversion and a data module that splits them over processes.

Targets come from image files or folders, scikit-image's sample photographs
(``astronaut``, ``astronaut_face``, ``chelsea``, ``coffee``, ``camera`` and the
faces of ``lfw_subset`` as ``lfw_subset/INDEX``), the MNIST and CIFAR-10 test
images of the offline zoo folder, or a generator's own samples. All become a
``TargetSet``: float32 images in [0, 1] of one size and channel count, with
labels where the source has them and latents for generator samples.

``TargetDataModule`` gives each process a disjoint share of the targets
(indices ``rank, rank + world_size, ...``) and yields dict batches::

    {"index": (B,) int64, "image": (B, C, H, W) float32, "label": (B,) int64,
     "latent": (B, *latent_shape) float32}   # "latent" only for generator samples

Labels are -1 where the source has none. Its dataset is iterable, so Lightning
does not add a ``DistributedSampler``, which would pad the shares with
repeated targets.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset

from rosetta_pl.zoo.base import convert_channels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
SKIMAGE_PHOTOGRAPHS = ("astronaut", "astronaut_face", "chelsea", "coffee", "camera")
# The astronaut's face in skimage.data.astronaut(): rows 45 to 164 and columns 180 to 299.
ASTRONAUT_FACE_BOX = (slice(45, 165), slice(180, 300))
MNIST_IMAGES_FILE = "mnist_t10k_images.idx3.gz"
MNIST_LABELS_FILE = "mnist_t10k_labels.idx1.gz"
CIFAR10_FOLDER = "cifar10_test20"

TargetSource = Literal["files", "skimage", "mnist", "cifar10", "generator"]


@dataclass
class TargetSet:
    """Target images with their labels, names and, for generator samples, latents.

    Attributes:
        images: (N, C, H, W) float32 images in [0, 1], C in {1, 3}.
        labels: (N,) int64 class labels, -1 where unknown.
        names: N human-readable names (file name, photograph name, dataset and index).
        latents: (N, *latent_shape) float32 latents of generator samples, else None.
    """

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    latents: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def zoo_folder(zoo_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the offline zoo folder: ``zoo_dir``, else ``$ROSETTA_ZOO_DIR``, else ``../shared/zoo``."""
    if zoo_dir is not None:
        return Path(zoo_dir)
    return Path(os.environ.get("ROSETTA_ZOO_DIR", "../shared/zoo"))


def _array_to_image(array: np.ndarray, name: str) -> torch.Tensor:
    """Turn an (H, W) or (H, W, 3) uint8 or [0, 1] float array into a (C, H, W) float32 tensor."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(
            f"target {name} has shape {array.shape}: expected a gray (H, W) or RGB (H, W, 3) "
            "image; convert it to RGB or grayscale first"
        )
    if array.dtype == np.uint8:
        tensor = torch.from_numpy(array.astype(np.float32) / 255.0)
    else:
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    return tensor.permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an RGB or gray image file as a (C, H, W) float32 tensor in [0, 1], C in {1, 3}.

    Palette images are converted to RGB and 16-bit gray images are scaled by
    1/65535.

    Raises:
        ValueError: if the image has another mode, such as RGBA, CMYK or gray with alpha.
    """
    with Image.open(path) as image:
        mode = image.mode
        if mode == "P":
            image = image.convert("RGB")
            mode = "RGB"
        if mode in ("RGB", "L"):
            return _array_to_image(np.asarray(image), str(path))
        if mode in ("I;16", "I;16B", "I;16L"):
            array = np.asarray(image, dtype=np.float32) / 65535.0
            return _array_to_image(array, str(path))
    raise ValueError(
        f"target image {path} has mode {mode!r}, which is neither RGB nor gray; "
        "convert it to RGB or grayscale (e.g. PIL's Image.convert('RGB')) first"
    )


def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into image file paths; a folder gives its images sorted by name."""
    found: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"target folder {path} contains no image file ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"target path {path} not found; give an image file or folder")
    return found


def skimage_photograph(name: str) -> torch.Tensor:
    """Return one of scikit-image's sample images as (C, H, W) float32 in [0, 1].

    Args:
        name: ``astronaut``, ``astronaut_face`` (the 120x120 crop around the
            face), ``chelsea``, ``coffee``, ``camera`` (gray), or
            ``lfw_subset/INDEX`` for a 25x25 gray image of ``lfw_subset``
            (indices 0 to 99 are faces, 100 to 199 non-faces).

    Raises:
        ValueError: if the name is unknown or the index is out of range.
    """
    import skimage.data

    match = re.fullmatch(r"lfw_subset/(\d+)", name)
    if match:
        faces = skimage.data.lfw_subset()
        index = int(match.group(1))
        if index >= len(faces):
            raise ValueError(f"target {name!r} is out of range: lfw_subset has indices 0 to {len(faces) - 1}")
        return _array_to_image(faces[index], name)
    if name not in SKIMAGE_PHOTOGRAPHS:
        raise ValueError(
            f"unknown scikit-image target {name!r}; choose one of {list(SKIMAGE_PHOTOGRAPHS)} or lfw_subset/INDEX"
        )
    if name == "astronaut_face":
        return _array_to_image(skimage.data.astronaut()[ASTRONAUT_FACE_BOX], name)
    return _array_to_image(getattr(skimage.data, name)(), name)


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _require_zoo_file(path: Path, description: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{description} not found at {path}; set the zoo_dir option or the "
            "ROSETTA_ZOO_DIR environment variable to the offline zoo folder"
        )
    return path


def mnist_test_images(count: int, start: int = 0, zoo_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return MNIST test images ``start`` to ``start + count - 1``.

    Returns:
        (count, 1, 28, 28) float32 images in [0, 1] and (count,) int64 labels.
    """
    folder = zoo_folder(zoo_dir)
    images = _read_idx(_require_zoo_file(folder / MNIST_IMAGES_FILE, "MNIST test images"))
    labels = _read_idx(_require_zoo_file(folder / MNIST_LABELS_FILE, "MNIST test labels"))
    if start < 0 or count < 1 or start + count > len(images):
        raise ValueError(
            f"MNIST test images {start} to {start + count - 1} are out of range: there are {len(images)} test images"
        )
    selected = torch.from_numpy(images[start : start + count].astype(np.float32) / 255.0)
    return selected[:, None].contiguous(), torch.from_numpy(labels[start : start + count].astype(np.int64))


def cifar10_test_images(count: int, start: int = 0, zoo_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the CIFAR-10 test images ``start`` to ``start + count - 1`` of the zoo folder.

    Returns:
        (count, 3, 32, 32) float32 images in [0, 1] and (count,) int64 labels.
    """
    folder = _require_zoo_file(zoo_folder(zoo_dir) / CIFAR10_FOLDER, "CIFAR-10 test images")
    files = sorted(folder.glob("cifar10_*_*.png"))
    if start < 0 or count < 1 or start + count > len(files):
        raise ValueError(
            f"CIFAR-10 test images {start} to {start + count - 1} are out of range: "
            f"{folder} contains {len(files)} images"
        )
    chosen = files[start : start + count]
    images = torch.stack([load_image(path) for path in chosen])
    labels = torch.tensor([int(path.stem.rsplit("_", 1)[1]) for path in chosen], dtype=torch.long)
    return images, labels


def convert_image_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert (N, 1 or 3, H, W) images to ``channels``: gray is replicated, RGB becomes BT.601 luma."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"target images of shape {tuple(images.shape)} are neither RGB nor gray: "
            "expected (N, C, H, W) with C = 1 or 3"
        )
    return convert_channels(images, channels).contiguous()


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, H, W) images to ``size``: antialiased bilinear, clamped to [0, 1]."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinking = images.shape[-2] >= size[0] and images.shape[-1] >= size[1]
    resized = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return resized.clamp(0.0, 1.0)


def stack_images(
    images: Sequence[torch.Tensor],
    names: Sequence[str],
    size: int | tuple[int, int] | None = None,
    channels: Literal[1, 3] | None = None,
) -> torch.Tensor:
    """Resize and convert (C, H, W) images to one (N, C, H, W) batch.

    Args:
        images: (C, H, W) float images in [0, 1].
        names: a name per image, for error messages.
        size: side or (height, width) of the output; None keeps the sizes, which must agree.
        channels: output channels; None keeps them, which must agree.

    Raises:
        ValueError: if an image is neither RGB nor gray, or sizes or channel
            counts differ and no common one is given.
    """
    if not images:
        raise ValueError("no target images: give at least one")
    prepared = []
    for image, name in zip(images, names, strict=True):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"target {name} of shape {tuple(image.shape)} is neither RGB nor gray: "
                "expected (C, H, W) with C = 1 or 3"
            )
        batch = image[None].float()
        if channels is not None:
            batch = convert_image_channels(batch, channels)
        if size is not None:
            batch = resize_images(batch, (size, size) if isinstance(size, int) else tuple(size))
        prepared.append(batch)
    shapes = {tuple(batch.shape[1:]) for batch in prepared}
    if len(shapes) > 1:
        raise ValueError(
            f"target images have different shapes {sorted(shapes)}: set size and channels so that they can be stacked"
        )
    return torch.cat(prepared)


def generator_samples(
    generator: str, count: int, seed: int, options: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``count`` samples of a zoo generator and their latents (sample indices 0 to count-1).

    Returns:
        (count, C, H, W) float32 images in [0, 1] and (count, *latent_shape) float32 latents.
    """
    from rosetta_pl import zoo

    model = zoo.build(generator, **(options or {}))
    latents = model.latents(torch.arange(count), seed=seed)
    with torch.no_grad():
        images = model.generate(latents)
    return images.float(), latents


def load_targets(
    source: TargetSource,
    *,
    paths: Sequence[str] = (),
    names: Sequence[str] = (),
    count: int = 10,
    start: int = 0,
    size: int | None = None,
    channels: Literal[1, 3] | None = None,
    generator: str = "face_dcgan",
    generator_options: dict[str, Any] | None = None,
    seed: int = 1000,
    zoo_dir: str | None = None,
) -> TargetSet:
    """Load a target set from one source; see ``TargetDataModule`` for the arguments."""
    latents = None
    if source == "files":
        files = image_files(paths)
        raw = [load_image(path) for path in files]
        labels = torch.full((len(raw),), -1, dtype=torch.long)
        image_names = [path.name for path in files]
    elif source == "skimage":
        if not names:
            raise ValueError("source 'skimage' needs names, e.g. ['astronaut_face', 'lfw_subset/0']")
        raw = [skimage_photograph(name) for name in names]
        labels = torch.full((len(raw),), -1, dtype=torch.long)
        image_names = list(names)
    elif source in ("mnist", "cifar10"):
        load = mnist_test_images if source == "mnist" else cifar10_test_images
        batch, labels = load(count, start, zoo_dir)
        raw = list(batch)
        image_names = [f"{source}_test_{start + i}" for i in range(count)]
    elif source == "generator":
        if count < 1:
            raise ValueError(f"count={count} is invalid: give at least one generator sample")
        batch, latents = generator_samples(generator, count, seed, generator_options)
        raw = list(batch)
        labels = torch.full((count,), -1, dtype=torch.long)
        image_names = [f"{generator}_seed{seed}_{i}" for i in range(count)]
    else:
        raise ValueError(f"unknown target source {source!r}; choose one of {TargetSource.__args__}")
    images = stack_images(raw, image_names, size, channels)
    return TargetSet(images=images, labels=labels, names=image_names, latents=latents)


class TargetShard(IterableDataset):
    """The batches of one process: targets ``rank, rank + world_size, ...`` in runs of ``batch_size``."""

    def __init__(self, targets: TargetSet, batch_size: int, rank: int, world_size: int) -> None:
        super().__init__()
        self.targets = targets
        self.batch_size = batch_size
        self.indices = torch.arange(rank, len(targets), world_size, dtype=torch.long)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for first in range(0, len(self.indices), self.batch_size):
            chunk = self.indices[first : first + self.batch_size]
            batch = {
                "index": chunk,
                "image": self.targets.images[chunk],
                "label": self.targets.labels[chunk],
            }
            if self.targets.latents is not None:
                batch["latent"] = self.targets.latents[chunk]
            yield batch


class TargetDataModule(LightningDataModule):
    """Target images for inversion, each process taking a disjoint share.

    The same targets serve ``fit``, ``validate`` and ``predict``: inversion
    has no training set, each pass optimises one latent per target.

    Args:
        source: where the targets come from: ``files`` (``paths``), ``skimage``
            (``names``), ``mnist`` or ``cifar10`` (test images ``start`` to
            ``start + count - 1`` of the zoo folder), or ``generator`` (samples
            0 to ``count - 1`` of ``generator`` with ``seed``).
        paths: image files and folders, for ``files``.
        names: scikit-image photographs, for ``skimage``: ``astronaut``,
            ``astronaut_face``, ``chelsea``, ``coffee``, ``camera`` or
            ``lfw_subset/INDEX``.
        count: number of test images or generator samples.
        start: first test image.
        size: side in pixels to resize every target to; None keeps the sizes.
        channels: 1 (gray) or 3 (RGB) to convert every target to; None keeps them.
        generator: zoo name of the generator, for ``generator``.
        generator_options: build options of the generator, for ``generator``.
        seed: latent seed of the generator samples; keep it different from
            the inversion's seed so a random start is not the target's own latent.
        batch_size: targets per process and step.
        zoo_dir: offline zoo folder; None uses ``$ROSETTA_ZOO_DIR`` or ``../shared/zoo``.
    """

    def __init__(
        self,
        source: TargetSource = "skimage",
        paths: list[str] | None = None,
        names: list[str] | None = None,
        count: int = 10,
        start: int = 0,
        size: int | None = 64,
        channels: Literal[1, 3] | None = None,
        generator: str = "face_dcgan",
        generator_options: dict[str, Any] | None = None,
        seed: int = 1000,
        batch_size: int = 8,
        zoo_dir: str | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is invalid: use a positive integer")
        if size is not None and size < 1:
            raise ValueError(f"size={size} is invalid: use a positive side in pixels or None")
        self.source = source
        self.paths = list(paths or [])
        self.names = list(names or [])
        self.count = count
        self.start = start
        self.size = size
        self.channels = channels
        self.generator = generator
        self.generator_options = dict(generator_options or {})
        self.seed = seed
        self.batch_size = batch_size
        self.zoo_dir = zoo_dir
        self.targets: TargetSet | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load every target; each process loads all of them and iterates over its share."""
        if self.targets is None:
            self.targets = load_targets(
                self.source,
                paths=self.paths,
                names=self.names,
                count=self.count,
                start=self.start,
                size=self.size,
                channels=self.channels,
                generator=self.generator,
                generator_options=self.generator_options,
                seed=self.seed,
                zoo_dir=self.zoo_dir,
            )

    def _loader(self) -> DataLoader:
        self.setup()
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world_size = trainer.world_size if trainer is not None else 1
        shard = TargetShard(self.targets, self.batch_size, rank, world_size)
        return DataLoader(shard, batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()
