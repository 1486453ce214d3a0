"""The desktop window (PySide6). It only shows the engine's state and forwards the user's choices to it.

Nothing in :mod:`mirage_desktop.engine` imports this package (an import-linter contract checks it).
"""
