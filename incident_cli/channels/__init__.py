"""Notification channels: a registry of channel type → class, each imported only when used."""

from __future__ import annotations

import importlib

import requests

from incident_cli.channels.base import Channel, Message, Outgoing, TransportError
from incident_cli.config import ChannelConfig

__all__ = ["REGISTRY", "Channel", "Message", "Outgoing", "TransportError", "build", "channel_class"]

REGISTRY: dict[str, str] = {
    "slack": "incident_cli.channels.slack:SlackChannel",
    "pagerduty": "incident_cli.channels.pagerduty:PagerDutyChannel",
    "statuspage": "incident_cli.channels.statuspage:StatuspageChannel",
    "email": "incident_cli.channels.email:EmailChannel",
    "webhook": "incident_cli.channels.webhook:WebhookChannel",
}


def channel_class(kind: str) -> type[Channel]:
    module_name, _, class_name = REGISTRY[kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert isinstance(cls, type) and issubclass(cls, Channel)
    return cls


def build(config: ChannelConfig, session: requests.Session | None = None) -> Channel:
    return channel_class(config.type)(config, session)
