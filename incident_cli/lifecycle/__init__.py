"""Incident state: alerts open, update, reopen and resolve incidents here, and only here."""
