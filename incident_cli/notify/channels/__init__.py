"""The channel kinds notifications are sent through, one module each."""
