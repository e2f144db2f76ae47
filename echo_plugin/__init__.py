"""Echo: pitch-aware attention models for ESPnet2 ASR, as a plugin.

``register()`` adds the ESPnet-facing tables of :mod:`echo_plugin.catalog`
(model, frontend, encoder, ... and optimizer classes, with any added by other
packages' ``echo_plugin.variants`` entry points) to ESPnet's module-level choice
tables. It is idempotent and imports ESPnet lazily, so ``import echo_plugin``
stays light.
"""
from __future__ import annotations

__version__ = "0.1.0"

_REGISTERED = False


def _register_optimizers() -> None:
    """Add ``catalog.OPTIMIZER`` to ``espnet2.tasks.abs_task.optim_classes`` (checked, idempotent)."""
    import espnet2.tasks.abs_task as abs_task
    import torch

    from echo_plugin import catalog

    for name, cls in catalog.OPTIMIZER.items():
        if not issubclass(cls, torch.optim.Optimizer):
            raise TypeError(f"{cls.__qualname__} must subclass torch.optim.Optimizer for optim_classes")
        known = abs_task.optim_classes.get(name)
        if known is not None and known is not cls:
            raise KeyError(f"optim_classes already has '{name}' = {known.__qualname__}")
        abs_task.optim_classes[name] = cls


def register() -> None:
    """Add ``catalog.ESPNET_CHOICES`` to ``espnet2.tasks.asr``'s choices (safe to call twice)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import espnet2.tasks.asr as asr_task

    from echo_plugin import catalog

    for table_name, classes in catalog.ESPNET_CHOICES.items():
        table = getattr(asr_task, table_name)
        for name, cls in classes.items():
            if not issubclass(cls, table.base_type):
                raise TypeError(f"{cls.__qualname__} must subclass {table.base_type.__qualname__} for {table_name}")
            known = table.classes.get(name)
            if known is not None and known is not cls:
                raise KeyError(f"{table_name} already has '{name}' = {known.__qualname__}")
            table.classes[name] = cls
    _register_optimizers()
    _REGISTERED = True
