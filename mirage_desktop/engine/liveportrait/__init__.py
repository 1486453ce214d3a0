"""Our PyTorch LivePortrait: networks, the one checkpoint loader, the motion maths and the chain the stage runs."""

from mirage_desktop.engine.liveportrait.loader import LivePortraitLoadError, LivePortraitNetworks, load_networks
from mirage_desktop.engine.liveportrait.motion import KpInfo
from mirage_desktop.engine.liveportrait.runner import DriveOptions, LivePortrait, SourceState, rgb_to_tensor

__all__ = [
    "DriveOptions",
    "KpInfo",
    "LivePortrait",
    "LivePortraitLoadError",
    "LivePortraitNetworks",
    "SourceState",
    "load_networks",
    "rgb_to_tensor",
]
