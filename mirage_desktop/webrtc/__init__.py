"""The WebRTC media side: peers, their offers, the avatar track, the data channel, and which peer drives the engine.

It knows nothing of HTTP: :mod:`mirage_desktop.api` serves the offers and answers the errors. This package init
stays light so that importing the app does not load aiortc.
"""
