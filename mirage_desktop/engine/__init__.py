"""The frame engine: sources, stages, outputs and metrics. Knows nothing of Qt."""
