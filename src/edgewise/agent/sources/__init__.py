"""Video sources (a plug-in family): the built-in ones, registered here explicitly."""

from edgewise.agent.config import SourceSettings
from edgewise.agent.sources.base import Source
from edgewise.agent.sources.folder import ImageFolderSource
from edgewise.agent.sources.opencv import CameraSource, StreamSource, VideoFileSource
from edgewise.agent.sources.synthetic import ConveyorSource
from edgewise.core.plugins import Registry

SOURCES: Registry[type[Source]] = Registry.of("video source", {
    "image-folder": ImageFolderSource, "video-file": VideoFileSource, "camera": CameraSource,
    "stream": StreamSource, "synthetic": ConveyorSource})


def create_source(settings: SourceSettings) -> Source:
    return SOURCES.get(settings.kind)(settings)


__all__ = ["SOURCES", "Source", "create_source"]
