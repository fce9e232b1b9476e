"""Layer capture, latents and the errors of the zoo registry."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from rosetta_pl.zoo import Generator, TokenLayout, build, capture_maps, resolve_layers
from rosetta_pl.zoo.capture import tokens_to_maps


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(OrderedDict([("conv", nn.Conv2d(3, 4, 3)), ("act", nn.ReLU())]))
        self.unused = nn.Conv2d(4, 2, 1)
        self.shared = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(self.shared(self.body(x)))


def hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in module.modules())


def test_resolve_layers_globs_in_order() -> None:
    net = nn.Sequential(OrderedDict([(f"block{i}", nn.Sequential(nn.ReLU(), nn.ReLU()))
                                     for i in range(3)]))
    assert resolve_layers(net, ["block*.1"]) == ["block0.1", "block1.1", "block2.1"]
    assert resolve_layers(net, ["block2", "block?"]) == ["block2", "block0", "block1"]


def test_unknown_layer_lists_closest_names() -> None:
    with pytest.raises(ValueError, match=r"unknown layer 'body.cnv'.*closest valid names.*body\.conv"):
        resolve_layers(Branchy(), ["body.cnv"])
    with pytest.raises(ValueError, match=r"unknown layer 'main\.99'.*closest valid names"):
        build("face_dcgan", layers=["main.99"])


def test_unrelated_layer_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown layer 'xyz'.*closest valid names: \['.+'"):
        build("mtcnn_onet", layers=["xyz"])


def test_empty_layers_rejected() -> None:
    with pytest.raises(ValueError, match="layers is empty"):
        resolve_layers(Branchy(), [])


def test_layer_without_output_is_error() -> None:
    net = Branchy()
    with pytest.raises(RuntimeError, match=r"\['unused'\] produced no output"):
        with capture_maps(net, ["body.act", "unused"]):
            net(torch.zeros(1, 3, 5, 5))
    assert hook_count(net) == 0


def test_layer_running_twice_is_error() -> None:
    net = Branchy()
    with pytest.raises(RuntimeError, match=r"more than once.*'shared': 2"):
        with capture_maps(net, ["shared"]):
            net(torch.zeros(1, 3, 5, 5))


def test_hooks_removed_after_exception() -> None:
    net = Branchy()
    with pytest.raises(RuntimeError, match="channels"):
        with capture_maps(net, ["body.conv"]):
            net(torch.zeros(1, 5, 5, 5))
    assert hook_count(net) == 0


def test_capture_detaches_and_clones() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 4, 4, requires_grad=True)
    with capture_maps(net, ["0"]) as maps:
        net(x)
    # The in-place ReLU after the convolution must not change the captured map.
    assert float(maps["0"].min()) < 0
    assert not maps["0"].requires_grad
    with capture_maps(net, ["1"], detach=False) as kept:
        net(x)
    assert kept["1"].requires_grad


def test_tokens_to_maps_non_square_grid() -> None:
    rows, columns, prefix, channels = 3, 5, 2, 4
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((2, prefix + rows * columns, channels))
    expected = np.zeros((2, channels, rows, columns))
    for r in range(rows):
        for c in range(columns):
            expected[:, :, r, c] = tokens[:, prefix + r * columns + c, :]
    layout = TokenLayout(grid=(rows, columns), num_prefix_tokens=prefix)
    actual = tokens_to_maps(torch.from_numpy(tokens), layout)
    np.testing.assert_array_equal(actual.numpy(), expected)
    sequence_first = torch.from_numpy(tokens).transpose(0, 1)
    actual_sequence_first = tokens_to_maps(
        sequence_first, TokenLayout(grid=(rows, columns), num_prefix_tokens=prefix, batch_first=False)
    )
    np.testing.assert_array_equal(actual_sequence_first.numpy(), expected)


def test_tokens_to_maps_count_mismatch() -> None:
    layout = TokenLayout(grid=(4, 4), num_prefix_tokens=1)
    with pytest.raises(RuntimeError, match=r"expected 16 patch tokens for a 4x4 grid"):
        tokens_to_maps(torch.zeros(1, 16, 3), layout)


@pytest.fixture(scope="module")
def face_gan() -> Generator:
    model = build("face_dcgan")
    assert isinstance(model, Generator)
    return model


def test_latents_same_in_two_halves(face_gan: Generator) -> None:
    indices = torch.tensor([7, 3, 100, 42, 0, 99999])
    whole = face_gan.latents(indices, seed=5)
    halves = torch.cat([face_gan.latents(indices[:3], seed=5), face_gan.latents(indices[3:], seed=5)])
    assert whole.shape == (6, 100)
    assert whole.dtype == torch.float32
    torch.testing.assert_close(whole, halves, rtol=0, atol=0)
    reordered = face_gan.latents(indices.flip(0), seed=5)
    torch.testing.assert_close(reordered.flip(0), whole, rtol=0, atol=0)


def test_latents_depend_on_seed_and_index(face_gan: Generator) -> None:
    first = face_gan.latents(torch.tensor([1, 2]), seed=0)
    other_seed = face_gan.latents(torch.tensor([1, 2]), seed=1)
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first, other_seed)


def test_latents_standard_normal(face_gan: Generator) -> None:
    values = face_gan.latents(torch.arange(400), seed=0).double()
    assert abs(float(values.mean())) < 0.02
    assert abs(float(values.std()) - 1.0) < 0.02


def test_latents_reject_bad_indices(face_gan: Generator) -> None:
    with pytest.raises(ValueError, match="1-D integer tensor"):
        face_gan.latents(torch.zeros(2, 2, dtype=torch.long), seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        face_gan.latents(torch.tensor([-1]), seed=0)


def test_prior_nll_reference(face_gan: Generator) -> None:
    latents = torch.randn(3, 100, dtype=torch.float64)
    expected = 0.5 * (latents.numpy() ** 2).sum(axis=1) / 100
    np.testing.assert_allclose(face_gan.prior_nll(latents).numpy(), expected, rtol=1e-12)


def test_generator_rejects_wrong_latent_shape(face_gan: Generator) -> None:
    with pytest.raises(ValueError, match=r"expected latents of shape \(B, 100\), got \(2, 64\)"):
        face_gan.generate(torch.zeros(2, 64))


def test_unknown_model_lists_close_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'face_dcgn'; closest names: \['face_dcgan'"):
        build("face_dcgn")
    with pytest.raises(ValueError, match=r"unknown model 'cifar10_resnet21'.*cifar10_resnet20"):
        build("cifar10_resnet21")


def test_truncation_rejected_without_support() -> None:
    with pytest.raises(ValueError, match=r"face_dcgan has no truncation, got truncation=0\.5; remove"):
        build("face_dcgan", truncation=0.5)


def test_unknown_option_rejected() -> None:
    with pytest.raises(ValueError, match=r"option weights_dir='x' does not apply to mtcnn_onet"):
        build("mtcnn_onet", weights_dir="x")


def test_rnet_rejects_input_size() -> None:
    with pytest.raises(ValueError, match=r"24x24 inputs, got input_size=32"):
        build("mtcnn_rnet", input_size=32)


def test_checksum_mismatch_without_shared_folder(tmp_path) -> None:
    (tmp_path / "mnist_lenet.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "SHA256SUMS").write_text("ab" * 32 + "  mnist_lenet.pth\n")
    with pytest.raises(ValueError, match=r"checksum mismatch for .*mnist_lenet\.pth.*expected abab"):
        build("lenet_mnist", weights_dir=str(tmp_path))


def test_missing_checksum_file(tmp_path) -> None:
    (tmp_path / "mnist_lenet.pth").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"SHA256SUMS not found"):
        build("lenet_mnist", weights_dir=str(tmp_path))
