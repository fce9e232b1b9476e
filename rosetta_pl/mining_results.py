"""Turn mined tables into buddies, Rosetta neurons and clusters, and write the outputs.

Kept apart from :mod:`rosetta_pl.mining` so the Lightning glue stays short:
everything here is plain tensors, JSON and files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rosetta_pl.io import (
    DICTIONARY_FILE,
    DICTIONARY_FORMAT,
    STATS_FILE,
    TABLES_FILE,
    write_json_atomic,
    write_tensors_atomic,
)
from rosetta_pl.maps import unit_locations
from rosetta_pl.matching import RosettaSet, best_buddies, cluster_concepts, rosetta_set


@dataclass
class MiningResult:
    """Everything a finished (or stopped) mining run produced.

    Attributes:
        tables: model name -> (Ug, Ud) float64 Pearson table.
        stats: ``count`` and per-unit ``<side>.mean`` / ``<side>.std`` (float64),
            ``<side>`` being ``generator`` or a model name.
        buddies: model name -> (P, 2) int64 pairs (generator unit, model unit).
        rosetta: the strict Rosetta set (mutual top-``k``).
        rosetta_relaxed: the relaxed set, or ``None`` when the strict one was large enough.
        clusters: (R,) int64 concept label of every strict Rosetta neuron
            (of the relaxed ones when the strict set is empty).
        dictionary: the JSON-ready description written to ``dictionary.json``.
    """

    tables: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor]
    buddies: dict[str, torch.Tensor]
    rosetta: RosettaSet
    rosetta_relaxed: RosettaSet | None
    clusters: torch.Tensor
    dictionary: dict[str, Any]

    def display_set(self) -> RosettaSet:
        """Return the Rosetta set shown in grids and clustered: strict, else relaxed."""
        if len(self.rosetta.units) == 0 and self.rosetta_relaxed is not None:
            return self.rosetta_relaxed
        return self.rosetta


def _unit_record(locations: list[tuple[str, int]], unit: int) -> dict[str, Any]:
    layer, channel = locations[unit]
    return {"unit": int(unit), "layer": layer, "channel": int(channel)}


def _network_record(spec: Any, network: Any) -> dict[str, Any]:
    options = dict(spec.options)
    truncation = getattr(spec, "truncation", None)
    if truncation is not None:
        options["truncation"] = truncation
    return {
        "name": spec.name,
        "options": options,
        "weights_sha256": network.weights_sha256,
        "weights_source": network.weights_source,
        "layers": list(network.layers),
        "unit_counts": {layer: int(network.unit_counts[layer]) for layer in network.layers},
        "num_units": int(network.num_units),
    }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _rosetta_record(
    chosen: RosettaSet,
    k: int,
    mode: str,
    clusters: torch.Tensor | None,
    generator_units: list[tuple[str, int]],
    model_units: dict[str, list[tuple[str, int]]],
) -> dict[str, Any]:
    neurons = []
    for row, unit in enumerate(chosen.units.tolist()):
        partners = {}
        for name in chosen.partners:
            partner = int(chosen.partners[name][row])
            record = _unit_record(model_units[name], partner)
            record["r"] = _finite(float(chosen.scores[name][row]))
            partners[name] = record
        neuron: dict[str, Any] = {"generator": _unit_record(generator_units, unit), "partners": partners}
        if clusters is not None:
            neuron["cluster"] = int(clusters[row])
        neurons.append(neuron)
    return {"k": k, "mode": mode, "neurons": neurons}


def build_result(
    module: Any,
    tables: dict[str, torch.Tensor],
    metric_stats: dict[str, dict[str, torch.Tensor]],
    generator_similarity: Callable[[torch.Tensor], torch.Tensor],
) -> MiningResult:
    """Match the tables of a :class:`~rosetta_pl.mining.MiningModule` and describe them.

    ``generator_similarity(units)`` returns the (R, R) correlation of the given
    generator units' maps, which the concept clusters are cut from.
    """
    hparams = module.hparams
    tables = {name: table.detach().cpu() for name, table in tables.items()}
    generator = module.generator
    generator_units = unit_locations(generator.layers, generator.unit_counts)
    model_units = {
        name: unit_locations(model.layers, model.unit_counts) for name, model in module.models.items()
    }

    first = next(iter(metric_stats.values()))
    stats = {
        "count": first["count"].detach().cpu(),
        "generator.mean": first["mean_x"].detach().cpu(),
        "generator.std": first["std_x"].detach().cpu(),
    }
    for name, values in metric_stats.items():
        stats[f"{name}.mean"] = values["mean_y"].detach().cpu()
        stats[f"{name}.std"] = values["std_y"].detach().cpu()

    buddies = {name: best_buddies(table, k=hparams.k) for name, table in tables.items()}
    strict = rosetta_set(tables, k=hparams.k)
    relaxed = None
    if len(strict.units) < hparams.min_rosetta:
        relaxed = rosetta_set(tables, k=hparams.relaxed_k)
    shown = strict if len(strict.units) > 0 or relaxed is None else relaxed
    units = shown.units
    similarity = generator_similarity(units).detach().cpu()
    clusters = cluster_concepts(similarity, min_similarity=hparams.cluster_similarity)

    buddy_records = {}
    for name, pairs in buddies.items():
        records = []
        for row, column in pairs.tolist():
            records.append(
                {
                    "generator": _unit_record(generator_units, row),
                    "model": _unit_record(model_units[name], column),
                    "r": _finite(float(tables[name][row, column])),
                }
            )
        records.sort(key=lambda record: -(record["r"] if record["r"] is not None else -2.0))
        buddy_records[name] = records

    num_cells = module.grid[0] * module.grid[1]
    datamodule = getattr(module.trainer, "datamodule", None) if module._trainer is not None else None
    dictionary: dict[str, Any] = {
        "format": DICTIONARY_FORMAT,
        "generator": _network_record(module.generator_spec, generator),
        "models": {
            name: _network_record(module.model_specs[name], module.models[name]) for name in module.models
        },
        "grid": {"size": list(module.grid), "mode": module.resize_mode},
        "data": {
            "num_samples": getattr(datamodule, "num_samples", None),
            "seed": getattr(datamodule, "seed", None),
            "samples_seen": int(round(float(stats["count"]) / num_cells)),
        },
        "buddies": buddy_records,
        "rosetta": _rosetta_record(
            strict, hparams.k, "mutual", clusters if shown is strict else None, generator_units, model_units
        ),
        "rosetta_relaxed": None
        if relaxed is None
        else _rosetta_record(
            relaxed, hparams.relaxed_k, "mutual", clusters if shown is relaxed else None,
            generator_units, model_units,
        ),
        "clusters": [
            {"id": label, "generator_units": [int(u) for u in units[clusters == label].tolist()]}
            for label in range(int(clusters.max()) + 1 if len(clusters) else 0)
        ],
    }
    return MiningResult(tables, stats, buddies, strict, relaxed, clusters, dictionary)


def write_result(result: MiningResult, run_dir: str | Path) -> None:
    """Write tables, stats and dictionary into ``run_dir``, each atomically."""
    run_dir = Path(run_dir)
    write_tensors_atomic(result.tables, run_dir / TABLES_FILE)
    write_tensors_atomic(result.stats, run_dir / STATS_FILE)
    write_json_atomic(result.dictionary, run_dir / DICTIONARY_FILE)


def summarise_result(result: MiningResult, num_pairs: int = 5) -> str:
    """Return a short text: buddies per model, Rosetta neurons and the strongest pairs."""
    dictionary = result.dictionary
    lines = [f"mined {dictionary['data']['samples_seen']} samples on a {dictionary['grid']['size']} grid"]
    for name, records in dictionary["buddies"].items():
        strong = sum(1 for record in records if record["r"] is not None and record["r"] > 0.5)
        lines.append(f"  {name}: {len(records)} best-buddy pairs, {strong} with r > 0.5")
    strict = len(dictionary["rosetta"]["neurons"])
    lines.append(f"  Rosetta neurons (mutual top-{dictionary['rosetta']['k']}): {strict}")
    if dictionary["rosetta_relaxed"] is not None:
        relaxed = dictionary["rosetta_relaxed"]
        lines.append(f"  Rosetta neurons (relaxed, mutual top-{relaxed['k']}): {len(relaxed['neurons'])}")
    lines.append(f"  concept clusters: {len(dictionary['clusters'])}")
    pairs = [
        (record["r"], name, record)
        for name, records in dictionary["buddies"].items()
        for record in records
        if record["r"] is not None
    ]
    pairs.sort(key=lambda item: -item[0])
    if pairs:
        lines.append("  strongest pairs:")
    for r, name, record in pairs[:num_pairs]:
        generator, model = record["generator"], record["model"]
        lines.append(
            f"    r={r:.3f}  generator {generator['layer']}[{generator['channel']}]"
            f"  <->  {name} {model['layer']}[{model['channel']}]"
        )
    return "\n".join(lines)
