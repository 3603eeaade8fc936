"""Notification channels: a registry of channel type → class, each imported only when used."""

from __future__ import annotations

import importlib

import requests

from incident_cli.config.model import ChannelConfig
from incident_cli.notify.channels.base import Channel, Message, Outgoing, TransportError

__all__ = ["REGISTRY", "Channel", "Message", "Outgoing", "TransportError", "build", "channel_class"]

REGISTRY: dict[str, str] = {
    "slack": "incident_cli.notify.channels.slack:SlackChannel",
    "pagerduty": "incident_cli.notify.channels.pagerduty:PagerDutyChannel",
    "statuspage": "incident_cli.notify.channels.statuspage:StatuspageChannel",
    "email": "incident_cli.notify.channels.email:EmailChannel",
    "webhook": "incident_cli.notify.channels.webhook:WebhookChannel",
}


def channel_class(kind: str) -> type[Channel]:
    module_name, _, class_name = REGISTRY[kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert isinstance(cls, type) and issubclass(cls, Channel)
    return cls


def build(config: ChannelConfig, session: requests.Session | None = None) -> Channel:
    return channel_class(config.type)(config, session)
