"""Modules that remember how they were built, so checkpoints hold plain values only."""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
from collections.abc import Iterator
from typing import Any

from torch import nn


class ConfigurableModule(nn.Module):
    """An ``nn.Module`` that records its class path and constructor arguments.

    After construction, :attr:`config` is ``{"class_path": ..., "init_args": {...}}``, the
    same form LightningCLI uses, so a module that holds a ``ConfigurableModule`` can save
    it as a plain dictionary and :func:`build_module` can rebuild it.
    """

    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            if type(self).__init__ is not recording_init:
                return  # a subclass records its own arguments
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            init_args = dict(list(bound.arguments.items())[1:])
            self.config = {"class_path": _class_path(type(self)), "init_args": init_args}

        cls.__init__ = recording_init


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(class_path: str) -> type:
    """Import ``"package.module.Class"``; a clear error names what could not be found."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"class path must be 'package.module.Class', got {class_path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of {class_path!r}: {err}") from err
    if not hasattr(module, name):
        raise ValueError(f"module {module_name!r} has no attribute {name!r} ({class_path!r})")
    return getattr(module, name)


@contextlib.contextmanager
def fresh_hyperparameters() -> Iterator[None]:
    """Build nested LightningModules with their own hyper-parameters.

    LightningCLI hands the config of the module it instantiates to ``save_hyperparameters``
    through a context variable; a module built inside that constructor (a pretrained
    classifier, say) must not pick up its parent's config.
    """
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # a Lightning without the mechanism has nothing to reset
        yield
        return
    token = _given_hyperparameters.set(None)
    try:
        yield
    finally:
        _given_hyperparameters.reset(token)


def build_module(spec: nn.Module | dict[str, Any], base: type = nn.Module) -> nn.Module:
    """Return ``spec`` if it is a module, else build it from ``{"class_path", "init_args"}``."""
    if isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise TypeError(
            "expected an nn.Module or a dict {'class_path': ..., 'init_args': {...}}, "
            f"got {type(spec).__name__}: {spec!r}"
        )
    cls = import_class(spec["class_path"])
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{spec['class_path']!r} is not a subclass of {base.__name__}")
    with fresh_hyperparameters():
        return cls(**spec.get("init_args", {}))


def module_config(module: nn.Module | dict[str, Any]) -> dict[str, Any] | None:
    """The plain ``class_path`` / ``init_args`` description of a module, if it has one."""
    if isinstance(module, dict):
        return module
    return getattr(module, "config", None)


def save_module_hyperparameters(module: Any, names: tuple[str, ...]) -> None:
    """``save_hyperparameters`` for a LightningModule whose arguments ``names`` may be modules.

    A module argument is stored as its plain config, so that checkpoints load with
    ``weights_only=True``; one that records no config is dropped with a warning (its
    checkpoints then need it passed again at load time).
    """
    import warnings

    with warnings.catch_warnings():
        for name in names:  # replaced by their plain configs just below
            warnings.filterwarnings("ignore", message=rf"Attribute '{name}' is an instance")
        module.save_hyperparameters(logger=False, frame=inspect.currentframe().f_back)
    for name in names:
        value = module.hparams.get(name)
        if not isinstance(value, nn.Module):
            continue
        config = module_config(value)
        if config is None:
            warnings.warn(
                f"{name} {type(value).__name__} does not record its config; checkpoints of "
                f"{type(module).__name__} need it passed again at load time",
                stacklevel=3,
            )
            module.hparams.pop(name)
        else:
            module.hparams[name] = config
