"""The HTTP API: the page, health, metrics, the offer endpoints (JSON and WHEP), the remote client's controls.

Import :class:`~mirage_desktop.api.server.HttpServer` from ``mirage_desktop.api.server``; this package init stays
light so that importing the app does not load aiohttp or aiortc.
"""
