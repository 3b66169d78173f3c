"""The synthetic world: scenes of simple objects, rendered to images and videos with exact ground truth.

A scene is a few objects (shape, colour, size) on a plain background. In an image scene they stand
still; in a video scene each object moves in a straight line along its own lane and is visible only
between its appear and disappear times (on a grid of ``event_step_s`` seconds, so that every event
falls on a sampled frame). Objects never overlap, so every object's mask is exactly the pixels drawn
for it, and boxes, masks and points are read off those pixels, not off the parameters.

Coordinates handed to the model follow Qwen3-VL: integers on a 0-1000 grid relative to width and
height. Times are seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 70, 220),
    "white": (245, 245, 245),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.18, "large": 0.3}  # fraction of the image side
BACKGROUND: tuple[int, int, int] = (25, 25, 25)
TEXT_COLOUR: tuple[int, int, int] = (245, 245, 245)
WORDS: tuple[str, ...] = (
    "CAT",
    "DOG",
    "SUN",
    "MAP",
    "RED",
    "BOX",
    "CUP",
    "KEY",
    "PEN",
    "HAT",
    "OWL",
    "BEE",
    "FOX",
    "CAR",
    "BUS",
    "TOY",
    "ICE",
    "JAM",
    "LOG",
    "NET",
    "OAK",
    "PIE",
    "RUG",
    "SKY",
    "VAN",
    "WEB",
    "YAK",
    "ZIP",
)


@dataclass(frozen=True)
class SceneObject:
    """One object. For images only ``start`` matters; in videos it moves from ``start`` to ``end``."""

    shape: str
    colour: str
    size: str
    side: int  # pixel extent of the shape's bounding square
    start: tuple[float, float]  # top-left corner (x, y) in pixels at t=0
    end: tuple[float, float]  # top-left corner at t=duration
    appear: float = 0.0  # seconds (inclusive)
    disappear: float = math.inf  # seconds (exclusive)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def visible(self, t: float) -> bool:
        return self.appear - 1e-9 <= t < self.disappear - 1e-9

    def corner(self, t: float, duration: float) -> tuple[float, float]:
        a = 0.0 if duration <= 0 else min(max(t / duration, 0.0), 1.0)
        return (
            self.start[0] + a * (self.end[0] - self.start[0]),
            self.start[1] + a * (self.end[1] - self.start[1]),
        )

    def direction(self) -> str:
        dx, dy = self.end[0] - self.start[0], self.end[1] - self.start[1]
        if abs(dx) < 1 and abs(dy) < 1:
            return "stays still"
        if abs(dx) >= abs(dy):
            return "right" if dx > 0 else "left"
        return "down" if dy > 0 else "up"


@dataclass
class Scene:
    """A scene with its objects; ``text`` is rendered in the middle (OCR and math scenes)."""

    size: int
    objects: list[SceneObject] = field(default_factory=list)
    text: str | None = None
    text_offset: tuple[int, int] = (0, 0)  # pixels from the centre
    text_scale: float = 0.25  # font size as a fraction of the side
    duration: float = 0.0  # 0 for images
    fps: int = 0

    @property
    def is_video(self) -> bool:
        return self.duration > 0

    def num_frames(self) -> int:
        return round(self.duration * self.fps)

    def frame_time(self, i: int) -> float:
        return i / self.fps


# --------------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=8)
def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: int, y: int, side: int, fill) -> None:
    box = (x, y, x + side - 1, y + side - 1)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(x + (side - 1) / 2, y), (x, y + side - 1), (x + side - 1, y + side - 1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, t: float = 0.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render the scene at time ``t``: an RGB uint8 image (H, W, 3) and one bool mask per object."""
    n = scene.size
    canvas = Image.new("RGB", (n, n), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    masks: list[np.ndarray] = []
    for obj in scene.objects:
        mask_img = Image.new("L", (n, n), 0)
        if not scene.is_video or obj.visible(t):
            x, y = scene_corner(scene, obj, t)
            _draw_shape(ImageDraw.Draw(mask_img), obj.shape, x, y, obj.side, 255)
            _draw_shape(draw, obj.shape, x, y, obj.side, COLOURS[obj.colour])
        masks.append(np.asarray(mask_img) > 0)
    if scene.text:
        font = _font(max(10, int(n * scene.text_scale)))
        bbox = draw.textbbox((0, 0), scene.text, font=font)
        tw, th = bbox[2] - bbox[0], bbox[3] - bbox[1]
        dx, dy = scene.text_offset
        draw.text(
            ((n - tw) / 2 - bbox[0] + dx, (n - th) / 2 - bbox[1] + dy),
            scene.text,
            font=font,
            fill=TEXT_COLOUR,
        )
    return np.asarray(canvas).copy(), masks


def scene_corner(scene: Scene, obj: SceneObject, t: float) -> tuple[int, int]:
    x, y = obj.corner(t, scene.duration) if scene.is_video else obj.start
    return int(round(x)), int(round(y))


def render_video(scene: Scene) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """All frames (T, H, W, 3) and, per frame, one mask per object."""
    frames, masks = [], []
    for i in range(scene.num_frames()):
        frame, m = render(scene, scene.frame_time(i))
        frames.append(frame)
        masks.append(m)
    return np.stack(frames), masks


# --------------------------------------------------------------------------------------------------
# Geometry read off the pixels


def mask_box(mask: np.ndarray) -> list[int] | None:
    """The 0-1000 box [x1, y1, x2, y2] enclosing the mask's pixels, or None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return [
        int(math.floor(xs.min() / w * 1000)),
        int(math.floor(ys.min() / h * 1000)),
        int(math.ceil((xs.max() + 1) / w * 1000)),
        int(math.ceil((ys.max() + 1) / h * 1000)),
    ]


def to_grid(x: float, y: float, w: int, h: int) -> list[int]:
    """Pixel centre (x, y) to the 0-1000 grid."""
    return [int(round((x + 0.5) / w * 1000)), int(round((y + 0.5) / h * 1000))]


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        m = out
        out = m.copy()
        out[1:, :] &= m[:-1, :]
        out[:-1, :] &= m[1:, :]
        out[:, 1:] &= m[:, :-1]
        out[:, :-1] &= m[:, 1:]
    return out


def _spread(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Pick k points from (N, 2) far apart from each other (greedy farthest-point sampling)."""
    chosen = [int(rng.integers(len(points)))]
    d = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < k:
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(points - points[i], axis=1))
    return points[chosen]


def prompt_points(
    mask: np.ndarray, all_masks: list[np.ndarray], rng: np.random.Generator
) -> tuple[list[list[int]], list[list[int]]]:
    """3 positive points clearly inside ``mask`` and 3 negative points clearly outside every object.

    Negatives are taken inside the object's box where there is clear background there (as SAM-style
    prompts prefer), else just outside the box.
    """
    h, w = mask.shape
    inner = _erode(mask, 2)
    if inner.sum() < 3:
        inner = _erode(mask, 1) if _erode(mask, 1).sum() >= 3 else mask
    pos_pix = np.argwhere(inner)[:, ::-1].astype(float)  # (x, y)
    pos = _spread(pos_pix, 3, rng)
    occupied = np.zeros_like(mask)
    for m in all_masks:
        occupied |= m
    clear = _erode(~occupied, 2)  # background at least 2 px from any object
    ys, xs = np.nonzero(mask)
    x1, x2, y1, y2 = xs.min(), xs.max(), ys.min(), ys.max()
    in_box = np.zeros_like(mask)
    in_box[y1 : y2 + 1, x1 : x2 + 1] = True
    candidates = np.argwhere(clear & in_box)
    if len(candidates) < 3:
        pad = max(3, (x2 - x1) // 3)
        ring = np.zeros_like(mask)
        ring[max(0, y1 - pad) : min(h, y2 + pad + 1), max(0, x1 - pad) : min(w, x2 + pad + 1)] = True
        candidates = np.argwhere(clear & ring)
    if len(candidates) < 3:
        candidates = np.argwhere(clear if clear.sum() >= 3 else ~occupied)
    neg = _spread(candidates[:, ::-1].astype(float), 3, rng)
    return [to_grid(x, y, w, h) for x, y in pos], [to_grid(x, y, w, h) for x, y in neg]


# --------------------------------------------------------------------------------------------------
# Scene sampling


def _pick_objects(rng: np.random.Generator, k: int, unique_colours: bool) -> list[tuple[str, str, str]]:
    shapes = rng.permutation(SHAPES)[:k]
    colour_names = list(COLOURS)
    if unique_colours:
        colours = list(rng.permutation(colour_names)[:k])
    else:
        colours = [colour_names[int(rng.integers(len(colour_names)))] for _ in range(k)]
    sizes = [("small", "large")[int(rng.integers(2))] for _ in range(k)]
    return [(str(s), str(c), str(z)) for s, c, z in zip(shapes, colours, sizes, strict=True)]


def _side(size: int, size_name: str) -> int:
    return max(6, int(round(size * SIZES[size_name])))


def sample_image_scene(
    rng: np.random.Generator,
    size: int,
    max_objects: int,
    min_objects: int = 1,
    unique_colours: bool = True,
    side_fraction: float | None = None,
) -> Scene:
    """Up to ``max_objects`` (at most 3: shapes are unique in a scene) non-overlapping objects.

    ``side_fraction`` overrides the size classes (one side for every object, as a fraction of the image)."""
    k = int(rng.integers(min_objects, min(max_objects, len(SHAPES)) + 1))
    placed: list[SceneObject] = []
    for shape, colour, size_name in _pick_objects(rng, k, unique_colours):
        side = int(round(size * side_fraction)) if side_fraction else _side(size, size_name)
        for _ in range(200):
            x, y = int(rng.integers(1, size - side)), int(rng.integers(1, size - side))
            if all(
                x + side + 2 <= o.start[0]
                or o.start[0] + o.side + 2 <= x
                or y + side + 2 <= o.start[1]
                or o.start[1] + o.side + 2 <= y
                for o in placed
            ):
                placed.append(SceneObject(shape, colour, size_name, side, (x, y), (x, y)))
                break
    return Scene(size=size, objects=placed)


def sample_text_scene(rng: np.random.Generator, size: int, text: str) -> Scene:
    """Text in the middle, shifted by up to a tenth of the side and at one of a few sizes."""
    scale = float(rng.choice([0.22, 0.25, 0.28]))
    font = _font(max(10, int(size * scale)))
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    room_x = max(0, (size - (right - left)) // 2 - 2)
    room_y = max(0, (size - (bottom - top)) // 2 - 2)
    jx, jy = min(room_x, size // 10), min(room_y, size // 10)
    offset = (int(rng.integers(-jx, jx + 1)), int(rng.integers(-jy, jy + 1)))
    return Scene(size=size, objects=[], text=text, text_offset=offset, text_scale=scale)


def _grid_time(rng: np.random.Generator, lo: float, hi: float, step: float) -> float:
    n_lo, n_hi = int(math.ceil(lo / step - 1e-9)), int(math.floor(hi / step + 1e-9))
    return float(rng.integers(n_lo, n_hi + 1)) * step


def sample_video_scene(
    rng: np.random.Generator,
    size: int,
    max_objects: int,
    duration: float,
    fps: int,
    event_step: float,
    min_objects: int = 1,
    always_visible: int | None = None,
    moving: bool | None = None,
) -> Scene:
    """Objects on separate lanes, each moving along one axis; some appear late or leave early.

    ``always_visible``: index of an object that is visible for the whole clip (tracking targets);
    ``moving``: force every object to move (True) or allow still ones (None).
    """
    k = int(rng.integers(min_objects, min(max_objects, len(SHAPES)) + 1))
    horizontal = bool(rng.integers(2))
    lane = size / k
    objects: list[SceneObject] = []
    for i, (shape, colour, size_name) in enumerate(_pick_objects(rng, k, unique_colours=True)):
        side = min(_side(size, size_name), int(lane) - 2)
        lane_lo = int(i * lane) + 1
        lane_pos = float(lane_lo + rng.integers(0, max(1, int(lane) - side - 1)))
        a, b = 1.0, float(size - side - 1)
        still = moving is None and rng.random() < 0.15
        if still:
            p0 = p1 = float(rng.uniform(a, b))
        else:
            span = float(rng.uniform(0.4, 0.9)) * (b - a)
            p0 = float(rng.uniform(a, b - span))
            p1 = p0 + span
            if rng.integers(2):
                p0, p1 = p1, p0
        start, end = ((p0, lane_pos), (p1, lane_pos)) if horizontal else ((lane_pos, p0), (lane_pos, p1))
        if always_visible == i:
            appear, disappear = 0.0, duration
        else:
            appear = 0.0 if rng.random() < 0.4 else _grid_time(rng, event_step, duration / 2, event_step)
            disappear = (
                duration
                if rng.random() < 0.4
                else _grid_time(rng, appear + max(1.0, event_step), duration - event_step, event_step)
            )
            if disappear <= appear:
                disappear = duration
        objects.append(SceneObject(shape, colour, size_name, side, start, end, appear, disappear))
    return Scene(size=size, objects=objects, duration=duration, fps=fps)
