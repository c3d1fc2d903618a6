"""The traffic sample's world: lanes seen from a pole, vehicles that drive along them.

Nothing here draws; `traffic.py` renders a `Scene` at one instant. A scene is deterministic by its
generator: lanes at five depths (far lanes high in the frame and small, near lanes low and
large, so the same class spans 12 px to half the frame), vehicles spawned at the frame's edges
with a gap that grows with their size, moving at a lane's speed. Far lanes drive left, near
lanes right, so a counting line sees both directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CLASSES = ["car", "van", "truck", "motorbike"]
# Width and height in pixels at scale 1.0 (the nearest lane), per class.
SIZES = {"car": (64.0, 26.0), "van": (66.0, 38.0), "truck": (118.0, 52.0), "motorbike": (30.0, 28.0)}
CLASS_MIX = np.array([0.45, 0.22, 0.13, 0.20])  # cars most common, as on a road
WIDTH, HEIGHT = 256, 192
HORIZON = 62


@dataclass(frozen=True)
class Lane:
    baseline: float  # y of the wheels, in frame pixels
    scale: float  # vehicle size relative to the nearest lane
    direction: int  # +1 drives right, -1 left
    speed: float  # pixels per frame at this lane's scale


@dataclass
class Vehicle:
    track_id: int
    label: str
    lane: int
    x: float  # left edge, frame pixels
    colour: tuple[int, int, int]
    cab_colour: tuple[int, int, int]  # a truck's cab, a rider's jacket
    style: float  # in [0, 1): small shape differences within a class

    def size(self, lane: Lane) -> tuple[float, float]:
        width, height = SIZES[self.label]
        return width * lane.scale, height * lane.scale

    def extent(self, lane: Lane) -> tuple[float, float, float, float]:
        width, height = self.size(lane)
        return self.x, lane.baseline - height, self.x + width, lane.baseline


@dataclass
class Scene:
    lanes: list[Lane]
    vehicles: list[Vehicle] = field(default_factory=list)
    next_id: int = 1
    density: float = 0.5  # spawn probability per lane per frame, scaled


PALETTE = [(235, 235, 230), (190, 192, 196), (40, 40, 45), (160, 30, 30), (30, 60, 150), (60, 110, 60),
           (200, 170, 60), (120, 120, 125), (90, 50, 30), (220, 120, 40)]


def make_lanes(rng: np.random.Generator) -> list[Lane]:
    """Five lanes from the horizon to the bottom edge; the camera's height varies a little per clip."""
    tilt = rng.uniform(-4, 4)
    lanes = []
    for index, (base, scale) in enumerate([(88, 0.40), (108, 0.50), (132, 0.64), (160, 0.80), (189, 1.0)]):
        direction = -1 if index < 2 else 1
        speed = rng.uniform(5.0, 9.0) * scale
        lanes.append(Lane(base + tilt * (1 - scale), scale, direction, speed))
    return lanes


def _pick_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    base = np.array(PALETTE[int(rng.integers(len(PALETTE)))], dtype=np.float64)
    return tuple(int(v) for v in np.clip(base + rng.normal(0, 12, 3), 0, 255))  # type: ignore[return-value]


def _spawn(scene: Scene, rng: np.random.Generator, lane_index: int, x: float | None) -> None:
    lane = scene.lanes[lane_index]
    label = CLASSES[int(rng.choice(len(CLASSES), p=CLASS_MIX))]
    vehicle = Vehicle(scene.next_id, label, lane_index, 0.0, _pick_colour(rng), _pick_colour(rng), float(rng.random()))
    width, _ = vehicle.size(lane)
    if x is None:
        x = -width if lane.direction > 0 else float(WIDTH)
    vehicle.x = x
    gap = 6 + 0.5 * width
    for other in scene.vehicles:
        if other.lane != lane_index:
            continue
        other_width, _ = other.size(lane)
        if x < other.x + other_width + gap and other.x < x + width + gap:
            return  # no room: try again on a later frame
    scene.vehicles.append(vehicle)
    scene.next_id += 1


def new_scene(rng: np.random.Generator) -> Scene:
    """A road already in traffic: vehicles spread along every lane at the first frame."""
    scene = Scene(make_lanes(rng), density=float(rng.uniform(0.25, 1.0)))
    for lane_index in range(len(scene.lanes)):
        for _ in range(int(rng.integers(1, 8) * scene.density) + 1):
            _spawn(scene, rng, lane_index, float(rng.uniform(-40, WIDTH)))
    return scene


def step(scene: Scene, rng: np.random.Generator, frames: int = 1) -> None:
    """Advance by `frames`: move, drop vehicles that left the frame, spawn at the entry edges."""
    for _ in range(frames):
        for vehicle in scene.vehicles:
            lane = scene.lanes[vehicle.lane]
            vehicle.x += lane.direction * lane.speed
        scene.vehicles = [v for v in scene.vehicles
                          if -v.size(scene.lanes[v.lane])[0] - 1 <= v.x <= WIDTH + 1]
        for lane_index in range(len(scene.lanes)):
            if rng.random() < 0.25 * scene.density:
                _spawn(scene, rng, lane_index, None)
