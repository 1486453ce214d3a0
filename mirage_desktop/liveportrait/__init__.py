"""Our PyTorch LivePortrait: networks, the one checkpoint loader, the motion maths and the chain the stage runs.

A library: it knows no pipeline, no stage and no UI (an import-linter contract keeps it so).
"""
