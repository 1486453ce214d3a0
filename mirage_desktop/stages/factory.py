"""Builds the engine's parts from :class:`~mirage_desktop.config.Settings`: the one place that knows which stages
exist (their identity is :mod:`mirage_desktop.stages.specs`), and how a source spec becomes a source."""

from __future__ import annotations

import logging

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource, Source, make_source
from mirage_desktop.engine.stage import Stage
from mirage_desktop.stages.specs import STAGE_NAMES

logger = logging.getLogger(__name__)


class UnknownStageError(ValueError):
    pass


def parse_enable(text: str) -> set[str]:
    """``"scrfd,liveportrait"`` -> names; unknown names raise with the list of valid ones."""
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(STAGE_NAMES))
    if unknown:
        raise UnknownStageError(
            f"Unknown stage {', '.join(repr(n) for n in unknown)} in --enable; choose from: {', '.join(STAGE_NAMES)}"
        )
    return names


def build_stages(settings: Settings) -> list[Stage]:
    """The model stages in the order of ``STAGE_SPECS``, switched on as the settings say (``MIRAGE_ENABLE_*`` or
    ``--enable``)."""
    stages: list[Stage] = []
    from mirage_desktop.stages.avatar.stage import AvatarStage
    from mirage_desktop.stages.face import FaceDetectionStage

    detector = FaceDetectionStage(settings)
    stages.append(detector)
    stages.append(AvatarStage(settings, detector))
    return stages


def make_engine_source(settings: Settings, spec: str | None = None, *, paced: bool = True) -> Source:
    return make_source(
        spec or settings.source,
        width=settings.output_width,
        height=settings.output_height,
        fps=settings.fps,
        paced=paced,
    )


def build_engine(
    settings: Settings,
    source: Source,
    *,
    every_frame: bool = False,
    max_frames: int | None = None,
) -> Engine:
    return Engine(
        source,
        build_stages(settings),
        every_frame=every_frame,
        max_frames=max_frames,
        device=settings.resolved_device(),
        fallback_source=lambda: DemoSource(settings.output_width, settings.output_height, settings.fps),
    )
