"""NeuronGrid: heat-map grids of the strongest Rosetta neurons after mining.

For each drawn neuron and each of a few generated images the grid has one row.
The row contains the image, the generator unit's map and every model's matched
unit map, each upsampled to the image size and laid over the image in one colormap. The
grid goes to TensorBoard (``rosetta/neuron_grid``) and to ``neuron_grid.png``
in the run folder, with a legend naming every row's units.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from rosetta_pl.io import replace_atomically
from rosetta_pl.maps import unit_locations
from rosetta_pl.matching import RosettaSet

log = logging.getLogger(__name__)


def colorize(maps: torch.Tensor, colormap: str = "inferno") -> torch.Tensor:
    """Map (B, h, w) values to (B, 3, h, w) RGB in [0, 1], each map min-max normalised."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    scaled = (maps - low) / (high - low).clamp_min(1e-12)
    table = torch.tensor(matplotlib.colormaps[colormap](torch.linspace(0, 1, 256).numpy())[:, :3])
    indices = (scaled * 255).round().long().clamp(0, 255)
    return table.to(maps.dtype)[indices].permute(0, 3, 1, 2)  # (B, 3, h, w)


def overlay(images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.6, colormap: str = "inferno") -> torch.Tensor:
    """Lay (B, h, w) maps, upsampled to the image size, over (B, C, H, W) images in [0, 1]."""
    size = images.shape[-2:]
    upsampled = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    heat = colorize(upsampled, colormap)
    gray = images.float().mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return (1 - alpha) * gray + alpha * heat


def strongest_neurons(chosen: RosettaSet, count: int) -> list[int]:
    """Return the rows of ``chosen`` with the highest weakest-partner correlation, best first."""
    if len(chosen.units) == 0:
        return []
    scores = torch.stack([chosen.scores[name].double() for name in chosen.scores], dim=1)
    weakest = torch.nan_to_num(scores, nan=-2.0).min(dim=1).values
    order = torch.argsort(-weakest, stable=True)
    return order[:count].tolist()


def _select_channel(maps: dict[str, torch.Tensor], locations: list[tuple[str, int]], unit: int) -> torch.Tensor:
    layer, channel = locations[unit]
    return maps[layer][:, channel]


class NeuronGrid(Callback):
    """Log and save heat-map grids of the strongest Rosetta neurons when mining ends.

    Args:
        num_neurons: neurons shown, strongest first (ranked by their weakest partner's r).
        num_images: generated images per neuron (global sample indices 0, 1, ...).
        colormap: a matplotlib colormap name, used for every map.
        alpha: weight of the heat map over the grayscale image.
        tile_size: side in pixels of every tile of the grid; images are resized to it.
    """

    def __init__(
        self,
        num_neurons: int = 6,
        num_images: int = 3,
        colormap: str = "inferno",
        alpha: float = 0.6,
        tile_size: int = 128,
    ):
        if colormap not in matplotlib.colormaps:
            raise ValueError(f"unknown colormap {colormap!r}; use a matplotlib name such as 'inferno' or 'viridis'")
        self.num_neurons = num_neurons
        self.num_images = num_images
        self.colormap = colormap
        self.alpha = alpha
        self.tile_size = tile_size

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        result = pl_module.result()  # collective: every process takes part
        if trainer.global_rank != 0:
            return
        chosen = result.display_set()
        rows = strongest_neurons(chosen, self.num_neurons)
        if not rows:
            log.warning("no Rosetta neuron to show: the neuron grid was not drawn")
            return
        grid, legend = self.draw(pl_module, chosen, rows)
        run_dir = Path(pl_module.run_dir())
        replace_atomically(run_dir / "neuron_grid.png", lambda path: _save_png(grid, path))
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("rosetta/neuron_grid", grid, global_step=trainer.global_step)
                logger.experiment.add_text("rosetta/neuron_grid_legend", legend, global_step=trainer.global_step)
                self._log_summary(logger, result, trainer.global_step)

    @torch.no_grad()
    def draw(self, pl_module: LightningModule, chosen: RosettaSet, rows: list[int]) -> tuple[torch.Tensor, str]:
        """Return the labelled (3, H, W) grid of the given rows of ``chosen`` and its markdown legend."""
        generator = pl_module.generator
        seed = pl_module._data_seed()
        indices = torch.arange(self.num_images)
        latents = generator.latents(indices, seed).to(pl_module.device)
        images, generator_maps = generator.generate(latents, return_maps=True)
        # Models see the generated images as they are; only the drawing is enlarged and made RGB.
        model_maps = {name: model.unit_maps(images) for name, model in pl_module.models.items()}
        images = images.float().cpu()
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        shown = F.interpolate(images, size=(self.tile_size, self.tile_size), mode="bilinear", align_corners=False)
        generator_units = unit_locations(generator.layers, generator.unit_counts)
        model_units = {name: unit_locations(m.layers, m.unit_counts) for name, m in pl_module.models.items()}

        tiles = []
        block_labels = []
        legend = ["| row | generator unit | " + " | ".join(chosen.partners) + " |"]
        legend.append("|---" * (2 + len(chosen.partners)) + "|")
        for position, row in enumerate(rows):
            unit = int(chosen.units[row])
            generator_map = _select_channel(generator_maps, generator_units, unit).cpu()
            columns = [shown, overlay(shown, generator_map, self.alpha, self.colormap)]
            cells = []
            for name in chosen.partners:
                partner = int(chosen.partners[name][row])
                partner_map = _select_channel(model_maps[name], model_units[name], partner).cpu()
                columns.append(overlay(shown, partner_map, self.alpha, self.colormap))
                layer, channel = model_units[name][partner]
                cells.append(f"{layer}[{channel}] r={float(chosen.scores[name][row]):.2f}")
            layer, channel = generator_units[unit]
            legend.append(f"| {position} | {layer}[{channel}] | " + " | ".join(cells) + " |")
            partner_lines = [f"{name}: {cell}" for name, cell in zip(chosen.partners, cells, strict=True)]
            block_labels.append([f"neuron {position}", f"generator: {layer}[{channel}]", *partner_lines])
            for image_index in range(len(shown)):
                tiles.extend(column[image_index] for column in columns)
        grid = make_grid(torch.stack(tiles).clamp(0, 1), nrow=2 + len(chosen.partners), padding=2, pad_value=1.0)
        headers = ["image", "generator", *chosen.partners]
        labelled = label_grid(grid, headers, block_labels, len(shown), self.tile_size, padding=2)
        note = f"Each neuron takes {len(images)} rows (one per image): image, generator unit, then each model's unit."
        return labelled, note + "\n\n" + "\n".join(legend)

    @staticmethod
    def _log_summary(logger: TensorBoardLogger, result, step: int) -> None:
        experiment = logger.experiment
        for name, table in result.tables.items():
            pairs = result.buddies[name]
            experiment.add_scalar(f"buddies/{name}", len(pairs), step)
            if len(pairs):
                scores = table[pairs[:, 0], pairs[:, 1]].float()
                experiment.add_histogram(f"buddy_r/{name}", scores, step)
        experiment.add_scalar("rosetta/strict", len(result.rosetta.units), step)
        if result.rosetta_relaxed is not None:
            experiment.add_scalar("rosetta/relaxed", len(result.rosetta_relaxed.units), step)
        experiment.add_scalar("rosetta/clusters", int(result.clusters.max()) + 1 if len(result.clusters) else 0, step)
        experiment.flush()


def label_grid(
    grid: torch.Tensor,
    headers: list[str],
    block_labels: list[list[str]],
    rows_per_block: int,
    tile_size: int,
    padding: int,
    margin: int = 220,
    header_height: int = 18,
) -> torch.Tensor:
    """Add column headers above a (3, H, W) grid and each neuron's units to its left.

    ``block_labels`` contains the text lines of every block of ``rows_per_block``
    rows. The result is a (3, H + header_height, W + margin) tensor in [0, 1].
    """
    array = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    height, width = array.shape[:2]
    canvas = Image.new("RGB", (width + margin, height + header_height), "white")
    canvas.paste(Image.fromarray(array), (margin, header_height))
    draw = ImageDraw.Draw(canvas)
    step = tile_size + padding
    for column, text in enumerate(headers):
        draw.text((margin + padding + column * step + 4, 3), text, fill="black")
    for block, lines in enumerate(block_labels):
        top = header_height + padding + block * rows_per_block * step
        draw.text((6, top + 4), "\n".join(lines), fill="black", spacing=4)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def _save_png(grid: torch.Tensor, path: str) -> None:
    array = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(array).save(path, format="PNG")
