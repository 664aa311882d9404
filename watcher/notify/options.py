"""What every notifier's options share. Each channel's own options model, which narrows
``type`` to its name, lives in the channel's module beside its notifier."""

from __future__ import annotations

from typing import Literal, get_args, get_origin

from pydantic import SecretStr, field_validator

from watcher.values import Duration, Model, RateField, http_url


class NotifierOptions(Model):
    type: str  # a channel's model makes it Literal["its-name"], the registry's discriminator
    rate: RateField | None = None
    digest: Duration | None = None
    timeout: Duration | None = None  # None: settings.timeout

    @property
    def enabled(self) -> bool:
        return True

    @classmethod
    def channel_type(cls) -> str:
        """The YAML ``type`` this model is for: the one value of its ``Literal``."""
        annotation = cls.model_fields["type"].annotation
        values = get_args(annotation) if get_origin(annotation) is Literal else ()
        if len(values) != 1 or not isinstance(values[0], str):
            raise TypeError(f"{cls.__name__}.type must be Literal['<its type>']")
        return values[0]


class PostOptions(NotifierOptions):
    """A notifier that posts to an http(s) URL."""

    url: SecretStr  # empty: the notifier is disabled

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        http_url(value.get_secret_value(), allow_empty=True)
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.url.get_secret_value())
