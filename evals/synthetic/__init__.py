"""Synthetic ground-truth benchmark: activations from a known dictionary, no language model."""
