"""What the state says: reports, reviews, metrics, health, archive and the event log."""
