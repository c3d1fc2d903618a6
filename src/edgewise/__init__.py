"""edgewise: computer vision models from the workstation to a fleet of edge devices."""

__version__ = "0.1.0"
