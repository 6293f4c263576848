"""Core SAE metrics: reconstruction statistics and spliced-in language-model metrics."""
