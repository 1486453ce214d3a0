"""The one list of the app's model stages: what each is called, shown as, switched by, and which models it needs.

``--enable``, the settings file, the window's switches and shortcuts, the download button and the stage classes
all read this list, so adding a stage means adding one line here (and its class in :mod:`.factory`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mirage_desktop.models.registry import FEATURES


@dataclass(frozen=True)
class StageSpec:
    """Identity of one stage."""

    name: str  # machine name: stats keys, metric labels, ``--enable``
    label: str  # what the window shows
    shortcut: str  # the window's key sequence that switches it
    setting: str  # the Settings field that remembers whether it is on
    model_group: str  # the registry feature (``mirage-models download <group>``) holding its models

    def __post_init__(self) -> None:
        if self.model_group not in FEATURES:
            raise ValueError(f"Stage {self.name!r} needs unknown model group {self.model_group!r}; known: {FEATURES}")


SCRFD = StageSpec("scrfd", "Face detection (SCRFD)", "Ctrl+1", "enable_scrfd", "scrfd")
LIVEPORTRAIT = StageSpec("liveportrait", "Animate (LivePortrait)", "Ctrl+2", "enable_liveportrait", "liveportrait")

#: Every stage, in processing order.
STAGE_SPECS: tuple[StageSpec, ...] = (SCRFD, LIVEPORTRAIT)
#: Their names, in processing order (what ``--enable`` accepts).
STAGE_NAMES: tuple[str, ...] = tuple(spec.name for spec in STAGE_SPECS)


def stage_spec(name: str) -> StageSpec:
    """The spec of a stage name; KeyError naming the known ones otherwise."""
    for spec in STAGE_SPECS:
        if spec.name == name:
            return spec
    raise KeyError(f"Unknown stage {name!r}; known: {', '.join(STAGE_NAMES)}")
