"""Recovery: running the planned actions of open incidents, one tick at a time."""
