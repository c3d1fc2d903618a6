"""Video sources (a plug-in family): importing this package registers the built-in ones."""

from edgewise.agent.sources import folder, opencv, synthetic
from edgewise.agent.sources.base import SOURCES, Source, create_source

__all__ = ["SOURCES", "Source", "create_source", "folder", "opencv", "synthetic"]
