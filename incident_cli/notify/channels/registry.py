"""The channel kinds: the one list of kind → class, each module imported only when used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

from incident_cli.notify.channels.base import Channel
from incident_cli.notify.channels.options import Options

if TYPE_CHECKING:
    import requests

# kind → "module:Class"; the Options class is the Channel's `options_type`.
KINDS: dict[str, str] = {
    "slack": "incident_cli.notify.channels.slack:SlackChannel",
    "pagerduty": "incident_cli.notify.channels.pagerduty:PagerDutyChannel",
    "statuspage": "incident_cli.notify.channels.statuspage:StatuspageChannel",
    "email": "incident_cli.notify.channels.email:EmailChannel",
    "webhook": "incident_cli.notify.channels.webhook:WebhookChannel",
}


class ChannelSettings(Protocol):
    """What a configured channel gives to build its Channel (config's ChannelConfig)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def options(self) -> Options: ...
    @property
    def timeout(self) -> float: ...
    @property
    def rate_limit(self) -> float | None: ...


def channel_class(kind: str) -> type[Channel[Options]]:
    module_name, _, class_name = KINDS[kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert isinstance(cls, type) and issubclass(cls, Channel)
    return cls


def options_class(kind: str) -> type[Options]:
    return channel_class(kind).options_type


def build(settings: ChannelSettings, session: requests.Session | None = None) -> Channel[Options]:
    return channel_class(settings.type)(
        settings.name,
        settings.options,
        timeout=settings.timeout,
        rate_limit=settings.rate_limit,
        session=session,
    )
