"""A DDP strategy for modules that train no parameter.

Mining and inversion hold frozen networks only: mining accumulates statistics
in metric states and inversion optimises latents that are plain tensors of
each process. ``torch.nn.parallel.DistributedDataParallel`` rejects a module
without a parameter that requires a gradient, and there is no gradient to
average anyway, so this strategy sets up the process group exactly as Lightning's
``ddp`` strategy does and skips the wrapper for such modules. A module that does
have trainable parameters is wrapped as usual.
"""

from __future__ import annotations

import logging

from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from typing_extensions import override

log = logging.getLogger(__name__)


def has_trainable_parameters(module) -> bool:
    """Return whether any parameter of ``module`` requires a gradient."""
    return any(parameter.requires_grad for parameter in module.parameters())


class StatisticsDDPStrategy(DDPStrategy):
    """``DDPStrategy`` that leaves a module without trainable parameters unwrapped.

    Registered as ``"rosetta_ddp"`` (processes started with ``popen``, like
    ``ddp``) and ``"rosetta_ddp_spawn"`` (``spawn``). Works with the gloo backend
    on CPU and nccl on GPU; collectives of torchmetrics and of the modules go
    through the default process group that this strategy initialises.
    """

    strategy_name = "rosetta_ddp"

    @override
    def configure_ddp(self) -> None:
        assert self.model is not None
        if has_trainable_parameters(self.model):
            super().configure_ddp()
            return
        rank_zero_info(
            f"{type(self.model).__name__} has no trainable parameter: running "
            f"{self.world_size} processes without the DistributedDataParallel wrapper"
        )

    @classmethod
    @override
    def register_strategies(cls, strategy_registry: StrategyRegistry) -> None:
        for name, start_method in (("rosetta_ddp", "popen"), ("rosetta_ddp_spawn", "spawn")):
            if name in strategy_registry:
                continue
            strategy_registry.register(
                name,
                cls,
                description=f"DDP without the wrapper for parameter-free modules, start method '{start_method}'",
                start_method=start_method,
            )


StatisticsDDPStrategy.register_strategies(StrategyRegistry)
