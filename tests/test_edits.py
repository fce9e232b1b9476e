"""Tests of the map edits against hand-built float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rosetta_pl.edits import (
    CopyPaste,
    HFlip,
    Identity,
    Shift,
    Zoom,
    copy_paste_maps,
    hflip_maps,
    shift_maps,
    zoom_maps,
)


def _random_maps(seed: int = 0, shape: tuple[int, ...] = (2, 3, 16, 16)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def test_shift_right_quarter_moves_cells() -> None:
    maps = _random_maps()
    shifted = shift_maps(maps, dx=0.25)
    reference = np.zeros(maps.shape)
    reference[..., 4:] = maps.numpy()[..., :12]
    np.testing.assert_allclose(shifted.numpy(), reference, atol=1e-12)


def test_shift_up_and_left() -> None:
    maps = _random_maps(1, (1, 2, 8, 10))
    shifted = shift_maps(maps, dx=-0.2, dy=-0.25)
    reference = np.zeros(maps.shape)
    reference[..., :6, :8] = maps.numpy()[..., 2:, 2:]
    np.testing.assert_allclose(shifted.numpy(), reference, atol=1e-12)


def test_shift_half_cell_interpolates() -> None:
    maps = torch.zeros(1, 1, 1, 4, dtype=torch.float64)
    maps[..., 1] = 1.0
    shifted = shift_maps(maps, dx=0.125)
    np.testing.assert_allclose(shifted.flatten().numpy(), [0.0, 0.5, 0.5, 0.0], atol=1e-12)


def test_shift_zero_is_identity() -> None:
    maps = _random_maps(2)
    torch.testing.assert_close(shift_maps(maps, 0.0, 0.0), maps)


def test_zoom_centred_blob_doubles_width() -> None:
    size = 32
    coordinates = np.arange(size) + 0.5 - size / 2
    yy, xx = np.meshgrid(coordinates, coordinates, indexing="ij")
    sigma = 4.0
    blob = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    maps = torch.from_numpy(blob)[None, None]
    zoomed = zoom_maps(maps, 2.0).numpy()[0, 0]
    reference = np.exp(-(xx**2 + yy**2) / (2 * (2 * sigma) ** 2))
    # Bilinear interpolation of a smooth blob: small error, all of it near the peak.
    np.testing.assert_allclose(zoomed, reference, atol=0.02)
    assert zoomed.argmax() == blob.argmax()


def test_zoom_two_equals_centre_crop_resized() -> None:
    maps = _random_maps(3, (2, 4, 16, 16)).float()
    zoomed = zoom_maps(maps, 2.0)
    crop = maps[..., 4:12, 4:12]
    reference = torch.nn.functional.interpolate(
        crop, size=(16, 16), mode="bilinear", align_corners=False
    )
    # Interpolating the crop clamps at its border, while the zoom reads the real cells just
    # outside the crop, so only the outermost ring of cells differs.
    torch.testing.assert_close(
        zoomed[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], atol=1e-5, rtol=0
    )


def test_zoom_out_fills_border_with_zero() -> None:
    maps = torch.ones(1, 1, 16, 16, dtype=torch.float64)
    zoomed = zoom_maps(maps, 0.5)
    assert torch.all(zoomed[..., :3, :] == 0)
    assert torch.all(zoomed[..., :, -3:] == 0)
    torch.testing.assert_close(zoomed[..., 5:11, 5:11], torch.ones(1, 1, 6, 6, dtype=torch.float64))


def test_zoom_about_corner_keeps_corner() -> None:
    maps = _random_maps(4, (1, 1, 8, 8))
    zoomed = zoom_maps(maps, 2.0, center=(0.0, 0.0))
    # The top-left cell's centre maps to (0.25, 0.25) cells: a blend of cell (0, 0) with
    # the zero padding above and left of it.
    expected = 0.75 * 0.75 * maps[0, 0, 0, 0]
    assert zoomed[0, 0, 0, 0].item() == pytest.approx(expected.item(), abs=1e-12)


def test_hflip_mirrors_columns() -> None:
    maps = _random_maps(5)
    flipped = hflip_maps(maps)
    np.testing.assert_array_equal(flipped.numpy(), maps.numpy()[..., ::-1])
    torch.testing.assert_close(hflip_maps(flipped), maps)


def test_copy_paste_same_position() -> None:
    destination = _random_maps(6)
    source = _random_maps(7, (1, 3, 16, 16))
    edited = copy_paste_maps(destination, source, region=(0.25, 0.5, 0.75, 1.0))
    reference = destination.numpy().copy()
    reference[..., 4:12, 8:16] = source.numpy()[..., 4:12, 8:16]
    np.testing.assert_array_equal(edited.numpy(), reference)
    assert not torch.equal(edited, destination)


def test_copy_paste_moved_block() -> None:
    destination = _random_maps(8)
    source = _random_maps(9)
    edited = copy_paste_maps(destination, source, (0.0, 0.0, 0.25, 0.25), paste_at=(0.5, 0.75))
    reference = destination.numpy().copy()
    reference[..., 8:12, 12:16] = source.numpy()[..., 0:4, 0:4]
    np.testing.assert_array_equal(edited.numpy(), reference)


def test_edit_classes_match_functions() -> None:
    maps = _random_maps(10)
    source = _random_maps(11, (1, 3, 16, 16))
    torch.testing.assert_close(
        Shift(dx=0.25, dy=-0.125).apply(maps), shift_maps(maps, 0.25, -0.125)
    )
    torch.testing.assert_close(Zoom(1.5, (0.4, 0.6)).apply(maps), zoom_maps(maps, 1.5, (0.4, 0.6)))
    torch.testing.assert_close(HFlip().apply(maps), hflip_maps(maps))
    torch.testing.assert_close(Identity().apply(maps), maps)
    paste = CopyPaste(source_index=3, region=(0.0, 0.0, 0.5, 0.5))
    assert paste.source_index == 3
    torch.testing.assert_close(
        paste.apply(maps, source), copy_paste_maps(maps, source, (0.0, 0.0, 0.5, 0.5))
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Zoom(factor=0.0), r"zoom factor=0.0 is invalid"),
        (lambda: Zoom(factor=-2.0), r"zoom factor=-2.0 is invalid"),
        (lambda: Zoom(factor=2.0, center=(1.5, 0.5)), r"zoom center=\(1.5, 0.5\) is invalid"),
        (lambda: Shift(dx=1.0), r"shift dx=1.0 is invalid"),
        (lambda: Shift(dy=-1.5), r"shift dy=-1.5 is invalid"),
        (lambda: CopyPaste(0, region=(0.5, 0.5, 1.2, 1.0)), r"region=.* is invalid"),
        (lambda: CopyPaste(0, region=(0.5, 0.5, 0.5, 1.0)), r"region=.* is invalid"),
        (lambda: CopyPaste(-1, region=(0.0, 0.0, 0.5, 0.5)), r"source_index=-1 is invalid"),
        (
            lambda: CopyPaste(0, region=(0.0, 0.0, 0.5, 0.5), paste_at=(0.75, 0.0)),
            r"reaches outside the maps",
        ),
    ],
)
def test_edit_rejects_bad_parameters(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_functions_reject_bad_input() -> None:
    maps = _random_maps(12)
    with pytest.raises(ValueError, match=r"expected maps of shape \(B, U, H, W\)"):
        shift_maps(maps[0], 0.1)
    with pytest.raises(ValueError, match=r"shift dx=-1.0 is invalid"):
        shift_maps(maps, -1.0)
    with pytest.raises(ValueError, match=r"zoom factor=0 is invalid"):
        zoom_maps(maps, 0)
    with pytest.raises(ValueError, match=r"do not match destination maps"):
        copy_paste_maps(maps, maps[:, :2], (0.0, 0.0, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"reaches outside the 16x16 maps"):
        copy_paste_maps(maps, maps, (0.0, 0.0, 0.5, 0.5), paste_at=(0.0, 0.75))
    with pytest.raises(ValueError, match=r"CopyPaste needs the maps of target 2"):
        CopyPaste(2, (0.0, 0.0, 0.5, 0.5)).apply(maps)
