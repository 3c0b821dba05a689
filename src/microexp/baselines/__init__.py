"""Hand-crafted baselines (not torch models), registered in the model registry with ``kind="sklearn"``."""
