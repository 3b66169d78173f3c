"""Task samples from synthetic scenes: question, exact answer and a truthful chain of thought.

``make_sample(pair, rng, world)`` draws a scene suited to the task, renders it, and returns a
``Sample`` holding the pixels, the question (plus options for multiple choice), the answer string that
goes inside ``<answer>`` (JSON for structured tasks), a short rationale generated from the scene, and
COCO RLE masks for segmentation. Everything in the answer is read off the rendered pixels (boxes,
masks, points) or the scene's event times, so every question is answerable from the pixels alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

from onethinker.contract.tasks import TaskPair
from onethinker.data import world as W

LETTERS = "ABCDEFGH"
DIRECTIONS = ("left", "right", "up", "down")


@dataclass(frozen=True)
class WorldSpec:
    """What the generator needs from the prepare config."""

    image_size: int = 64
    max_objects: int = 3
    duration: float = 4.0
    fps: int = 4
    event_step: float = 0.5


@dataclass
class Sample:
    pair: TaskPair
    problem: str
    answer: str  # content of <answer>
    think: str
    image: np.ndarray | None = None  # (H, W, 3) uint8
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8
    fps: int = 0
    options: list[str] | None = None
    masks: list[dict] | None = None  # COCO RLE, one (image) or one per native frame (video)
    extra: dict = field(default_factory=dict)


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(", ", ": "))


def _options(correct: str, pool: list[str]) -> tuple[list[str], str]:
    """Every candidate as an option, in the pool's fixed order, and the correct letter.

    The embedded world lists all candidates in one canonical order (colours as in ``COLOURS``, directions
    left/right/up/down), so the option letter is a fixed function of the answer. Shuffled options make
    the letter depend on reading the option list, a skill a ~1M-parameter model does not pick up within
    minutes of CPU training; real data keeps whatever order its files have.
    """
    return [f"{LETTERS[i]}. {v}" for i, v in enumerate(pool)], LETTERS[pool.index(correct)]


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _fmt_t(x: float) -> float:
    return float(round(x, 2))


def _describe(o: W.SceneObject) -> str:
    return f"a {o.size} {o.colour} {o.shape}"


# --------------------------------------------------------------------------------------------------
# image tasks


def _image_scene(
    rng, ws: WorldSpec, min_objects: int = 1, unique_colours: bool = True
) -> tuple[W.Scene, np.ndarray, list]:
    scene = W.sample_image_scene(rng, ws.image_size, ws.max_objects, min_objects, unique_colours)
    image, masks = W.render(scene)
    return scene, image, masks


def mc_image(pair, rng, ws) -> Sample:
    # One object filling most of the frame: the question tests colour perception, not binding a colour to
    # one of several small shapes (other tasks ask about multi-object scenes).
    scene = W.sample_image_scene(
        rng, ws.image_size, max_objects=1, side_fraction=float(rng.uniform(0.55, 0.8))
    )
    image, _ = W.render(scene)
    target = scene.objects[0]
    options, letter = _options(target.colour, list(W.COLOURS))
    think = (
        f"I see the {target.shape}; it is {target.colour}. {target.colour.capitalize()} is option {letter}."
    )
    return Sample(pair, f"What colour is the {target.shape}?", letter, think, image=image, options=options)


def numerical_image(pair, rng, ws) -> Sample:
    scene, image, _ = _image_scene(rng, ws, unique_colours=False)
    if rng.random() < 0.5:
        n = len(scene.objects)
        names = ", ".join(o.name for o in scene.objects)
        return Sample(
            pair,
            "How many objects are in the image?",
            str(n),
            f"The objects are: {names}. That is {n}.",
            image=image,
        )
    colour = str(rng.choice(list(W.COLOURS)))
    hits = [o for o in scene.objects if o.colour == colour]
    listing = ", ".join(o.name for o in scene.objects)
    think = f"The objects are: {listing}. {len(hits)} of them {'is' if len(hits) == 1 else 'are'} {colour}."
    return Sample(pair, f"How many {colour} objects are in the image?", str(len(hits)), think, image=image)


def regression_image(pair, rng, ws) -> Sample:
    scene, image, masks = _image_scene(rng, ws)
    i = int(rng.integers(len(scene.objects)))
    obj, m = scene.objects[i], masks[i]
    if rng.random() < 0.5:
        pct = round(float(m.mean()) * 100, 1)
        think = f"The {obj.shape} covers {int(m.sum())} of {m.size} pixels, about {_fmt_num(pct)} percent."
        q = f"What percentage of the image area does the {obj.shape} cover?"
        return Sample(pair, q, _fmt_num(pct), think, image=image)
    ys, xs = np.nonzero(m)
    cx = int(round((xs.mean() + 0.5) / m.shape[1] * 1000))
    think = f"The {obj.shape}'s centre is at x = {cx} on the 0-1000 grid."
    q = f"What is the horizontal position of the {obj.shape}'s centre on a 0-1000 scale?"
    return Sample(pair, q, str(cx), think, image=image)


def ocr_image(pair, rng, ws) -> Sample:
    word = str(rng.choice(W.WORDS))
    image, _ = W.render(W.sample_text_scene(rng, ws.image_size, word))
    think = f"The image shows the letters {' '.join(word)}, which read {word}."
    return Sample(pair, "What text is written in the image?", word, think, image=image)


def _caption(objects: list[W.SceneObject]) -> str:
    ordered = sorted(objects, key=lambda o: o.start[0])
    parts = [_describe(o) for o in ordered]
    listing = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listing.capitalize()} on a dark background."


def open_ended_image(pair, rng, ws) -> Sample:
    scene, image, _ = _image_scene(rng, ws)
    if rng.random() < 0.5:
        cap = _caption(scene.objects)
        think = f"From left to right I see {len(scene.objects)} object(s)."
        return Sample(pair, "Describe the image in one sentence.", cap, think, image=image)
    target = scene.objects[int(rng.integers(len(scene.objects)))]
    ans = f"The {target.colour} object is a {target.size} {target.shape}."
    think = f"Looking at the {target.colour} object, it is a {target.shape} of {target.size} size."
    return Sample(pair, f"What does the {target.colour} object look like?", ans, think, image=image)


def math_image(pair, rng, ws) -> Sample:
    a, b = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    op = str(rng.choice(["+", "-", "x"]))
    value = {"+": a + b, "-": a - b, "x": a * b}[op]
    text = f"{a}{op}{b}"
    image, _ = W.render(W.sample_text_scene(rng, ws.image_size, text))
    word = {"+": "plus", "-": "minus", "x": "times"}[op]
    think = f"The image shows {a} {word} {b}. {a} {op} {b} = {value}."
    return Sample(
        pair,
        "Compute the value of the expression in the image (x means multiply).",
        str(value),
        think,
        image=image,
    )


def spatial_grounding_image(pair, rng, ws) -> Sample:
    scene, image, masks = _image_scene(rng, ws)
    i = int(rng.integers(len(scene.objects)))
    box = W.mask_box(masks[i])
    obj = scene.objects[i]
    think = f"The {obj.name} spans x {box[0]}-{box[2]} and y {box[1]}-{box[3]}."
    return Sample(pair, f"Locate the {obj.name} in the image.", _dumps({"boxes": box}), think, image=image)


def segmentation_image(pair, rng, ws) -> Sample:
    scene, image, masks = _image_scene(rng, ws)
    i = int(rng.integers(len(scene.objects)))
    obj = scene.objects[i]
    box = W.mask_box(masks[i])
    pos, neg = W.prompt_points(masks[i], masks, rng)
    think = f"The {obj.name} occupies box {box}; points inside it are positive, background points negative."
    answer = _dumps({"boxes": box, "positive_points": pos, "negative_points": neg})
    return Sample(pair, f"Segment the {obj.name}.", answer, think, image=image, masks=[rle(masks[i])])


# --------------------------------------------------------------------------------------------------
# video tasks


def _video_scene(rng, ws, **kw) -> tuple[W.Scene, np.ndarray, list[list[np.ndarray]]]:
    scene = W.sample_video_scene(rng, ws.image_size, ws.max_objects, ws.duration, ws.fps, ws.event_step, **kw)
    frames, masks = W.render_video(scene)
    return scene, frames, masks


def _span(o: W.SceneObject, duration: float) -> tuple[float, float]:
    return _fmt_t(o.appear), _fmt_t(min(o.disappear, duration))


def _frame_index(scene: W.Scene, t: float) -> int:
    return min(scene.num_frames() - 1, int(round(t * scene.fps)))


def mc_video(pair, rng, ws) -> Sample:
    scene, frames, _ = _video_scene(rng, ws, moving=True)
    target = scene.objects[int(rng.integers(len(scene.objects)))]
    d = target.direction()
    options, letter = _options(d, list(DIRECTIONS))
    s, e = _span(target, scene.duration)
    think = f"The {target.name} is visible from {s}s to {e}s and moves {d}. That is option {letter}."
    return Sample(
        pair,
        f"In which direction does the {target.shape} move?",
        letter,
        think,
        frames=frames,
        fps=scene.fps,
        options=options,
    )


def numerical_video(pair, rng, ws) -> Sample:
    scene, frames, _ = _video_scene(rng, ws)
    if rng.random() < 0.5:
        n = len(scene.objects)
        names = ", ".join(o.name for o in scene.objects)
        return Sample(
            pair,
            "How many different objects appear in the video?",
            str(n),
            f"Over the whole video I see: {names}. That is {n}.",
            frames=frames,
            fps=scene.fps,
        )
    t = float(rng.integers(0, int(scene.duration)))
    vis = [o for o in scene.objects if o.visible(t)]
    names = ", ".join(o.name for o in vis) or "nothing"
    return Sample(
        pair,
        f"How many objects are visible at {_fmt_num(t)} seconds?",
        str(len(vis)),
        f"At {_fmt_num(t)}s I see: {names}.",
        frames=frames,
        fps=scene.fps,
    )


def regression_video(pair, rng, ws) -> Sample:
    scene, frames, _ = _video_scene(rng, ws)
    o = scene.objects[int(rng.integers(len(scene.objects)))]
    s, e = _span(o, scene.duration)
    think = (
        f"The {o.name} appears at {s}s and is gone at {e}s, so it is visible for {_fmt_num(e - s)} seconds."
    )
    return Sample(
        pair,
        f"For how many seconds is the {o.shape} visible?",
        _fmt_num(round(e - s, 2)),
        think,
        frames=frames,
        fps=scene.fps,
    )


def open_ended_video(pair, rng, ws) -> Sample:
    scene, frames, _ = _video_scene(rng, ws)
    sentences = []
    for o in sorted(scene.objects, key=lambda o: (o.appear, o.shape)):
        s, e = _span(o, scene.duration)
        move = "stays still" if o.direction() == "stays still" else f"moves {o.direction()}"
        when = "" if (s == 0 and e == _fmt_t(scene.duration)) else f" from {_fmt_num(s)}s to {_fmt_num(e)}s"
        sentences.append(f"A {o.colour} {o.shape} {move}{when}.")
    think = f"I follow each of the {len(scene.objects)} object(s) through the video."
    return Sample(
        pair, "Describe what happens in the video.", " ".join(sentences), think, frames=frames, fps=scene.fps
    )


def temporal_grounding(pair, rng, ws) -> Sample:
    scene, frames, _ = _video_scene(rng, ws)
    o = scene.objects[int(rng.integers(len(scene.objects)))]
    s, e = _span(o, scene.duration)
    think = f"The {o.name} first appears at {s}s and is last seen before {e}s."
    return Sample(
        pair,
        f"When is the {o.name} visible in the video?",
        _dumps({"time": [s, e]}),
        think,
        frames=frames,
        fps=scene.fps,
    )


def _boxes_per_second(scene, masks, i: int, seconds: list[int], key_offset: int = 0) -> dict[str, list[int]]:
    out = {}
    for sec in seconds:
        box = W.mask_box(masks[_frame_index(scene, float(sec))][i])
        if box is not None:
            out[str(sec + key_offset)] = box
    return out


def spatial_temporal_grounding(pair, rng, ws) -> Sample:
    scene, frames, masks = _video_scene(rng, ws)
    i = int(rng.integers(len(scene.objects)))
    o = scene.objects[i]
    s, e = _span(o, scene.duration)
    seconds = [sec for sec in range(int(math.ceil(s)), int(math.ceil(e))) if o.visible(float(sec))]
    if not seconds:  # a short span between two whole seconds: pick another object visible at a second
        return spatial_temporal_grounding(pair, rng, ws)
    boxes = _boxes_per_second(scene, masks, i, seconds)
    think = f"The {o.name} is visible from {s}s to {e}s; I give its box at each whole second in that span."
    return Sample(
        pair,
        f"When and where is the {o.name} in the video?",
        _dumps({"time": [s, e], "boxes": boxes}),
        think,
        frames=frames,
        fps=scene.fps,
    )


def tracking(pair, rng, ws) -> Sample:
    rng_idx = int(rng.integers(0, ws.max_objects))
    scene, frames, masks = _video_scene(rng, ws, always_visible=rng_idx, moving=True)
    i = min(rng_idx, len(scene.objects) - 1)
    if not (scene.objects[i].appear == 0 and scene.objects[i].disappear >= scene.duration):
        return tracking(pair, rng, ws)
    o = scene.objects[i]
    seconds = list(range(0, int(math.ceil(scene.duration))))
    boxes = _boxes_per_second(scene, masks, i, seconds, key_offset=1)  # key "1" is t=0
    first = boxes["1"]
    q = (
        f"The {o.shape} is at {first} in the first frame. Track it and give its box at every second "
        "(key 1 is the first frame)."
    )
    think = f"The {o.name} moves {o.direction()}; I follow it one second at a time."
    return Sample(pair, q, _dumps({"boxes": boxes}), think, frames=frames, fps=scene.fps)


def segmentation_video(pair, rng, ws) -> Sample:
    scene, frames, masks = _video_scene(rng, ws)
    i = int(rng.integers(len(scene.objects)))
    o = scene.objects[i]
    s, e = _span(o, scene.duration)
    # key frame: the middle of the visible span, on the event grid (a sampled frame)
    t = math.floor(((s + e) / 2) / ws.event_step) * ws.event_step
    t = _fmt_t(min(max(t, s), e - ws.event_step))
    fi = _frame_index(scene, t)
    frame_masks = [m[i] for m in masks]
    box = W.mask_box(frame_masks[fi])
    pos, neg = W.prompt_points(frame_masks[fi], masks[fi], rng)
    think = (
        f"The {o.name} is clearly visible at {t}s inside box {box}; I place points on it and on background."
    )
    answer = _dumps({"time": t, "boxes": box, "positive_points": pos, "negative_points": neg})
    return Sample(
        pair,
        f"Segment the {o.name} in the video.",
        answer,
        think,
        frames=frames,
        fps=scene.fps,
        masks=[rle(m) for m in frame_masks],
    )


GENERATORS: dict[tuple[str, str], Callable[[TaskPair, np.random.Generator, WorldSpec], Sample]] = {
    ("multiple choice", "image"): mc_image,
    ("multiple choice", "video"): mc_video,
    ("numerical", "image"): numerical_image,
    ("numerical", "video"): numerical_video,
    ("regression", "image"): regression_image,
    ("regression", "video"): regression_video,
    ("OCR", "image"): ocr_image,
    ("open-ended", "image"): open_ended_image,
    ("open-ended", "video"): open_ended_video,
    ("math", "image"): math_image,
    ("temporal grounding", "video"): temporal_grounding,
    ("spatial grounding", "image"): spatial_grounding_image,
    ("spatial-temporal grounding", "video"): spatial_temporal_grounding,
    ("tracking", "video"): tracking,
    ("segmentation", "image"): segmentation_image,
    ("segmentation", "video"): segmentation_video,
}


def make_sample(pair: TaskPair, rng: np.random.Generator, ws: WorldSpec) -> Sample:
    return GENERATORS[(pair.problem_type, pair.data_type)](pair, rng, ws)
