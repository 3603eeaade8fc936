"""Notifications: the outbox, its delivery, and the channels it sends through."""
