"""The notifier channels by YAML ``type``.

Each channel's module in this package declares ``CHANNEL = Channel(Options, Notifier)``:
the pydantic model its options are validated with (whose ``type: Literal["name"]`` is its
name) and the class that sends. The config's union of notifier options is built here from
those declarations, so a new channel is one new module, and nothing else names it.
"""

from __future__ import annotations

import functools
import importlib
import operator
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from watcher.notify.base import Notifier
from watcher.notify.options import NotifierOptions


@dataclass(frozen=True)
class Channel:
    """A kind of notifier: the model of its options and the class that sends."""

    options: type[NotifierOptions]
    notifier: type[Notifier]

    def __post_init__(self) -> None:
        self.options.channel_type()  # a model without its Literal type fails here, not later

    @property
    def type(self) -> str:
        return self.options.channel_type()


_added: dict[str, Channel] = {}
"""Channels registered from outside this package (a plugin's own module, a test)."""


@functools.cache
def _declared() -> Mapping[str, Channel]:
    """The ``CHANNEL`` of every module of this package, imported once, when the first
    config is read."""
    package = importlib.import_module(__package__ or "watcher.notify")
    found: dict[str, Channel] = {}
    for module in pkgutil.iter_modules(package.__path__):
        declared = getattr(
            importlib.import_module(f"{package.__name__}.{module.name}"), "CHANNEL", None
        )
        if isinstance(declared, Channel):
            found[declared.type] = declared
    return found


def channels() -> tuple[Channel, ...]:
    """Every channel, by type name."""
    every = {**_declared(), **_added}
    return tuple(every[kind] for kind in sorted(every))


def types() -> tuple[str, ...]:
    return tuple(channel.type for channel in channels())


def channel(kind: str) -> Channel:
    """The channel of a ``type`` the config accepted."""
    return _added.get(kind) or _declared()[kind]


def register(added: Channel) -> Channel:
    """Add a channel declared outside this package; its type must be new."""
    if added.type in _declared() or added.type in _added:
        raise ValueError(f"a notifier type {added.type!r} is registered already")
    _added[added.type] = added
    return added


def unregister(kind: str) -> None:
    """Remove a channel added with ``register``."""
    del _added[kind]


def options_adapter() -> TypeAdapter[Any]:
    """Validates one notifier's options into its channel's model, chosen by ``type``."""
    return _adapter(tuple(channel.options for channel in channels()))


@functools.cache
def _adapter(models: tuple[type[NotifierOptions], ...]) -> TypeAdapter[Any]:
    union = functools.reduce(operator.or_, models)
    return TypeAdapter(Annotated[union, Field(discriminator="type")])
