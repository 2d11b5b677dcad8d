"""Rate, fidelity and task metrics."""
