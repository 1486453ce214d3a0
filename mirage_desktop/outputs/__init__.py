"""Outputs that take the engine's frames out of the app: the virtual camera and the recorder.

Each module is imported on its own (``from mirage_desktop.outputs.virtual_camera import ...``) so that using one
output never loads another's native library.
"""
