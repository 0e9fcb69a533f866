"""Elastic edge training (Chaos, arXiv 2505.12815): data-parallel SGD on the emulated
network's nodes while they join, leave, crash and lose links (docs/training.md)."""
