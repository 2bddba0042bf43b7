"""rcdml: Relationship Constraint Deep Metric Learning, exact and distributed."""
__version__ = "0.1.0"
