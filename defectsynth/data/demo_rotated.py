"""A procedural stand-in for an MVTec AD category whose part lies at any angle (like `screw`).

A grayscale metal screw seen from the side (a head, a plain neck, a threaded shaft and a tip) lies at a
random angle and place on a bright, slightly mottled background. Each defect type belongs to one part of
the screw, so placement that ignores the part's pose puts it on empty background:

- scratch_head: a bright gouge across the head;
- thread_side: a bite out of one side of the thread, with bright bare metal at its edge;
- manipulated_front: the front of the shaft bent sideways (the mask covers where it was and where it is).

The part is drawn in its own frame (unit coordinates: the screw's axis along +x, centred on the
origin), with the defect's mask in the same frame, and one rotation and shift places both. Geometry is
in fractions of the image side, so any size looks alike.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFECTS = ("manipulated_front", "scratch_head", "thread_side")
SHIFT = 4  # sub-pixel bits for cv2 drawing
ONE = 1 << SHIFT

HEAD = (-0.28, -0.20, 0.085)  # x0, x1, half height
NECK = (-0.20, -0.08, 0.032)
THREAD = (-0.08, 0.22, 0.046)  # crests
ROOT = 0.034  # half height at the thread's roots
PITCH = 0.026
TIP = 0.28
REACH = 0.29  # the farthest the screw reaches from its centre


def _pts(xy, size: int) -> np.ndarray:
    """Unit part-frame coordinates (origin in the image centre) to cv2 fixed-point pixels."""
    return np.round((np.asarray(xy, np.float64) + 0.5) * size * ONE).astype(np.int32).reshape(-1, 1, 2)


def _fill(img: np.ndarray, poly, size: int, value: float) -> None:
    cv2.fillPoly(img, [_pts(poly, size)], value, cv2.LINE_AA, SHIFT)


def _line(img: np.ndarray, a, b, size: int, width: float, value: float) -> None:
    p, q = _pts(a, size)[0, 0], _pts(b, size)[0, 0]
    cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), value, max(1, round(width * size)),
             cv2.LINE_AA, SHIFT)


def _noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    small = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _outline(bend_at: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The screw's silhouette as (body polygon without the front, front polygon from `bend_at` on)."""
    hx0, hx1, hh = HEAD
    nx0, nx1, nh = NECK
    tx0, tx1, th = THREAD
    cut = tx1 if bend_at is None else bend_at
    body = [[hx0 + 0.01, -hh], [hx1, -hh], [hx1, -nh], [tx0, -nh], [tx0, -th], [cut, -th],
            [cut, th], [tx0, th], [tx0, nh], [hx1, nh], [hx1, hh], [hx0 + 0.01, hh], [hx0, hh - 0.015],
            [hx0, -hh + 0.015]]
    front = [[cut, -th], [tx1, -th], [TIP, -0.008], [TIP, 0.008], [tx1, th], [cut, th]]
    return np.array(body), np.array(front)


def _screw(size: int, rng: np.random.Generator, bend: tuple[float, float] | None):
    """Gray value (float32 0..255) and alpha (0..1) of the screw in its own frame, and, when bent at
    (x, angle), the bent front's alpha and where the straight front was."""
    body, front = _outline(None if bend is None else bend[0])
    alpha = np.zeros((size, size), np.float32)
    _fill(alpha, body, size, 1.0)
    front_a = np.zeros((size, size), np.float32)
    _fill(front_a, front, size, 1.0)
    # metal: darker towards the edges of the shaft, a bright streak along its axis
    ys = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    across = np.abs(ys)[:, None] / THREAD[2]
    metal = 70 + 80 * np.exp(-(across / 0.45) ** 2) + 8 * _noise(size, 60, rng)
    gray = np.broadcast_to(metal, (size, size)).astype(np.float32).copy()
    # the head's face is flat: lighter and even; its rim darker
    hx0, hx1, hh = HEAD
    head = np.zeros((size, size), np.float32)
    _fill(head, [[hx0 + 0.012, -hh + 0.012], [hx1 - 0.008, -hh + 0.012], [hx1 - 0.008, hh - 0.012],
                 [hx0 + 0.012, hh - 0.012]], size, 1.0)
    gray = gray * (1 - head) + (120 + 6 * _noise(size, 40, rng)) * head
    # thread grooves: slanted dark lines across the threaded part, crests a little brighter
    tx0, tx1, th = THREAD
    grooves = np.zeros((size, size), np.float32)
    for x in np.arange(tx0 + PITCH / 2, TIP, PITCH):
        _line(grooves, [x - 0.008, -th], [x + 0.008, th], size, 0.007, 1.0)
    grooves = cv2.GaussianBlur(grooves, (0, 0), max(0.5, size / 512))
    gray = gray * (1 - 0.55 * grooves)
    # the thread's outline is toothed: notches between the crests on both sides
    teeth = np.zeros((size, size), np.float32)
    for x in np.arange(tx0 + PITCH / 2, tx1, PITCH):
        for s in (-1, 1):
            _fill(teeth, [[x - 0.007, s * (th + 0.002)], [x + 0.007, s * (th + 0.002)], [x, s * ROOT]], size, 1.0)
    alpha = alpha * (1 - teeth)
    front_a = front_a * (1 - teeth)
    was = front_a.copy()
    if bend is not None:
        m = cv2.getRotationMatrix2D(((bend[0] + 0.5) * size, 0.5 * size), bend[1], 1.0)
        front_a = cv2.warpAffine(front_a, m, (size, size), flags=cv2.INTER_LINEAR)
        gray = np.where(front_a > 0, cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR), gray)
    return gray, np.maximum(alpha, front_a), front_a, was


def render(size: int, label: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """One grayscale image (size x size uint8) of class `label`, and its uint8 0/255 mask (None for good)."""
    image, mask, _pose = render_posed(size, label, rng)
    return image, mask


def render_posed(size: int, label: str, rng: np.random.Generator):
    """render() and the screw's pose: (angle in degrees counter-clockwise, centre x, centre y in pixels);
    angle 0 has the head on the left."""
    bend = (float(rng.uniform(0.08, 0.16)), float(rng.choice([-1, 1]) * rng.uniform(18, 35))) \
        if label == "manipulated_front" else None
    gray, alpha, front_now, front_was = _screw(size, rng, bend)
    defect = np.zeros((size, size), np.float32)
    grow = max(1, round(0.008 * size))
    if label == "scratch_head":
        hx0, hx1, hh = HEAD
        a = [rng.uniform(hx0 + 0.015, hx1 - 0.015), -hh + 0.025]
        b = [rng.uniform(hx0 + 0.015, hx1 - 0.015), hh - 0.025]
        _line(defect, a, b, size, 0.014, 1.0)
        defect *= alpha > 0.5
        soft = cv2.GaussianBlur(defect, (0, 0), max(0.5, size / 600))
        gray = gray * (1 - soft) + (215 + 10 * _noise(size, 80, rng)) * soft
        defect = cv2.dilate(defect, _disk(grow))
    elif label == "thread_side":
        tx0, tx1, th = THREAD
        x = rng.uniform(tx0 + 0.05, tx1 - 0.04)
        s = float(rng.choice([-1, 1]))
        w, d = rng.uniform(0.05, 0.08), rng.uniform(0.025, 0.04)
        ang = np.linspace(0, np.pi, 9)
        bite = np.stack([x + np.cos(ang) * w / 2 * rng.uniform(0.8, 1.1, 9),
                         s * (th + 0.004 - np.sin(ang) * (d + 0.004) * rng.uniform(0.8, 1.1, 9))], 1)
        hole = np.zeros((size, size), np.float32)
        _fill(hole, bite, size, 1.0)
        rim = cv2.dilate(hole, _disk(max(1, round(0.01 * size)))) * (1 - hole) * (alpha > 0.5)
        gray = gray * (1 - rim) + (200 + 15 * _noise(size, 80, rng)) * rim
        alpha = alpha * (1 - hole)
        defect = cv2.dilate(np.maximum(hole, rim), _disk(grow))
    elif label == "manipulated_front":
        defect = cv2.dilate(np.maximum(front_now, front_was), _disk(grow))

    # pose: any angle, anywhere the whole screw stays inside the picture
    angle = float(rng.uniform(0, 360))
    cx, cy = rng.uniform(REACH + 0.02, 1 - REACH - 0.02, 2) * size
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    m[:, 2] += (cx - size / 2, cy - size / 2)
    warp = lambda layer: cv2.warpAffine(layer, m, (size, size), flags=cv2.INTER_LINEAR)  # noqa: E731
    mask = None
    if label != "good":
        mask = np.where(warp(defect) > 0.5, 255, 0).astype(np.uint8)
    return _composite(warp(gray), warp(alpha), size, rng), mask, (angle, float(cx), float(cy))


def _composite(gray: np.ndarray, alpha: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Screw over a bright mottled background with a soft shadow, per-image lighting and sensor noise."""
    background = rng.uniform(185, 215) * (1 + 0.03 * _noise(size, 5, rng) + 0.02 * _noise(size, 30, rng))
    shadow = cv2.GaussianBlur(alpha, (0, 0), 0.012 * size)
    shadow = np.roll(shadow, (int(0.008 * size), int(0.008 * size)), axis=(0, 1))
    scene = background * (1 - 0.35 * shadow)
    scene = scene * (1 - alpha) + gray * alpha
    gx, gy = rng.normal(0, 0.08, 2)
    lin = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    scene = scene * rng.uniform(0.9, 1.08) * (1 + gx * lin[None, :] + gy * lin[:, None])
    scene = scene + 2 * rng.standard_normal((size, size), dtype=np.float32)
    return np.clip(scene + 0.5, 0, 255).astype(np.uint8)
