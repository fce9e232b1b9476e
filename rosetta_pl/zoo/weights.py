"""Locate and verify weight files: the offline weights folder, packaged files and local files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosetta_pl.zoo.base import file_sha256

WEIGHTS_DIR_ENV = "ROSETTA_ZOO_DIR"
DEFAULT_WEIGHTS_DIR = "../shared/zoo"
CHECKSUM_FILE = "SHA256SUMS"


def weights_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """Return the offline weights folder.

    The ``weights_dir`` option wins, then the ``ROSETTA_ZOO_DIR`` environment variable,
    then ``../shared/zoo`` relative to the current working directory.
    """
    if option is not None:
        return Path(option)
    return Path(os.environ.get(WEIGHTS_DIR_ENV, DEFAULT_WEIGHTS_DIR))


def read_checksums(folder: Path) -> dict[str, str]:
    """Read ``SHA256SUMS`` of ``folder`` (``sha256sum`` output format) into file name -> digest."""
    path = folder / CHECKSUM_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"checksum file {path} not found; the weights folder must contain {CHECKSUM_FILE} "
            f"(set the weights_dir option or {WEIGHTS_DIR_ENV} to the right folder)"
        )
    checksums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        checksums[name.lstrip("*").strip()] = digest.lower()
    return checksums


def verified_zoo_file(file_name: str, description: str, folder_option: str | None) -> tuple[Path, str]:
    """Return the path and SHA-256 of a file of the offline weights folder after checking it.

    Args:
        file_name: File name inside the folder, e.g. ``"mnist_lenet.pth"``.
        description: What the file contains, for the error message.
        folder_option: The ``weights_dir`` option, or None for the default.

    Raises:
        FileNotFoundError: If the file is missing; the message names the file, what it is
            and how to point to another folder.
        ValueError: If the file has no entry in ``SHA256SUMS`` or its checksum differs.
    """
    folder = weights_dir(folder_option)
    path = folder / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"weight file {path} not found ({description}); set the weights_dir option or the "
            f"{WEIGHTS_DIR_ENV} environment variable to the folder that contains {file_name}"
        )
    expected = read_checksums(folder).get(file_name)
    if expected is None:
        raise ValueError(f"{file_name} has no entry in {folder / CHECKSUM_FILE}; add its SHA-256")
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {path}: SHA-256 {actual}, expected {expected} from "
            f"{CHECKSUM_FILE}; the file is corrupt or a different version, so replace it"
        )
    return path, actual


def load_state_dict(path: str | os.PathLike[str], key: str | None = None) -> dict[str, Any]:
    """Load a state dict onto the CPU with ``weights_only=True``, optionally from ``checkpoint[key]``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None:
        if key not in checkpoint:
            raise KeyError(f"{path} has no {key!r} entry; it contains {sorted(checkpoint)}")
        checkpoint = checkpoint[key]
    return checkpoint


def strip_prefix(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Remove ``prefix`` from every key that starts with it (e.g. DataParallel's ``module.``)."""
    return {
        (key[len(prefix) :] if key.startswith(prefix) else key): value
        for key, value in state_dict.items()
    }


def local_weights_file(path: str | os.PathLike[str], description: str) -> Path:
    """Return ``path`` as a Path if it is a file, else raise FileNotFoundError naming ``description``."""
    resolved = Path(path)
    if not resolved.is_file():
        raise FileNotFoundError(
            f"weights_path {resolved} not found ({description}); point weights_path to the file"
        )
    return resolved


def load_zoo_weights(
    network: nn.Module,
    file_name: str,
    description: str,
    folder_option: str | None,
    key: str | None = None,
    prefix: str | None = None,
) -> tuple[str, str]:
    """Load a checked file of the offline weights folder into ``network`` with ``strict=True``.

    Args:
        network: The module to fill.
        file_name: File name inside the folder.
        description: What the file contains, for error messages.
        folder_option: The ``weights_dir`` option, or None for the default.
        key: Entry of the checkpoint dict that contains the state dict, if any.
        prefix: Prefix to strip from every key (``"module."`` for DataParallel checkpoints).

    Returns:
        The weights source (the file's path) and the file's SHA-256.
    """
    path, sha256 = verified_zoo_file(file_name, description, folder_option)
    state_dict = load_state_dict(path, key=key)
    if prefix is not None:
        state_dict = strip_prefix(state_dict, prefix)
    network.load_state_dict(state_dict, strict=True)
    return str(path), sha256
