"""Handlers: what a rule plans when its incident opens, built-in or the user's."""
