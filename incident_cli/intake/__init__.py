"""What comes in: alerts from sources, synthetic journeys, anomaly checks."""
