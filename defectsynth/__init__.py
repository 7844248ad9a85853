"""defectsynth: few-shot defect synthesis, rebalancing and honest evaluation."""

__version__ = "0.1.0"
