"""WebRTC and the HTTP API: remote peers watch the avatar (our page or any WHEP player) and may drive it.

Import :class:`~mirage_desktop.webrtc.server.HttpServer` from ``mirage_desktop.webrtc.server``; this package
init stays light so that importing the app does not load aiortc.
"""
