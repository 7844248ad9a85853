"""Procedural stand-ins for MVTec AD categories, in MVTec's folder layout.

`make_demo(kind=...)`: `transistor` (this file, the default), `rotated` (a grayscale screw lying at any
angle, data/demo_rotated.py) and `texture` (a woven fabric with defects anywhere, data/demo_texture.py).

The transistor: a dark plastic case with a printed mark and three metal leads sits on a copper stripboard. Each
image has its own small pose and lighting variation; each defect type keeps MVTec's meaning and
gets a white-on-black mask. Geometry is in fractions of the image side, so any size looks alike.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rich.progress import Progress

from defectsynth.errors import DefectsynthError
from defectsynth.io import encode_png, write_bytes

DEFECTS = ("bent_lead", "cut_lead", "damaged_case", "misplaced")
KINDS = ("transistor", "rotated", "texture")

CASE = (0.31, 0.19, 0.69, 0.60)  # x0, y0, x1, y1
LEAD_W = 0.034
SHIFT = 4  # sub-pixel bits for cv2 drawing
ONE = 1 << SHIFT


def kind_of(kind: str):
    """(defect class names, render function) of a demo kind."""
    if kind == "transistor":
        return DEFECTS, render
    if kind == "rotated":
        from defectsynth.data import demo_rotated as module
    elif kind == "texture":
        from defectsynth.data import demo_texture as module
    else:
        raise DefectsynthError(f"--kind {kind!r} is unknown; use one of: {', '.join(KINDS)}")
    return module.DEFECTS, module.render


def make_demo(root: Path, size: int = 1024, seed: int = 0, n_train_good: int = 213, n_test_good: int = 60,
              n_per_defect: int = 10, progress: bool = True, kind: str = "transistor") -> Path:
    """Write the demo category under `root` and return `root`. Re-running leaves identical files untouched."""
    defects, draw = kind_of(kind)
    if size < 32:
        raise DefectsynthError(f"--size {size} is too small to draw the part; use 32 pixels or more")
    root = Path(root)
    # The per-image seed is [seed, folder index, i], so an image does not depend on how many others are made.
    folders = (("train", "good"), ("test", "good")) + tuple(("test", d) for d in defects)
    counts = (n_train_good, n_test_good) + (n_per_defect,) * len(defects)
    jobs = [(k, i) for k, n in enumerate(counts) for i in range(n)]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{kind} demo data at {size} px", total=len(jobs))
        for k, i in jobs:
            split, label = folders[k]
            image, mask = draw(size, label, np.random.default_rng([seed, k, i]))
            stem = f"{i:03d}"
            _write_if_changed(root / split / label / f"{stem}.png", image)
            if mask is not None:
                _write_if_changed(root / "ground_truth" / label / f"{stem}_mask.png", mask)
            bar.advance(task)
    return root


def _write_if_changed(path: Path, image: np.ndarray) -> None:
    # Rewriting identical bytes would still bump the mtime and invalidate every image cache built on it.
    data = encode_png(image)
    if not (path.is_file() and path.read_bytes() == data):
        write_bytes(path, data)


def render(size: int, label: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """One RGB image (size x size x 3 uint8) of class `label`, and its uint8 0/255 mask (None for good)."""
    board = _board(size, rng)
    leads = _lead_paths(rng)
    defect = None  # the defect's mask in the part's canonical pose
    damage = None
    if label == "bent_lead":
        k = int(rng.integers(3))
        bent = _bend(leads[k], rng)
        # Like MVTec's, the mask marks where the bent lead is now, not where the straight lead was.
        straight = _polyline_mask(size, [leads[k]], LEAD_W * 1.2)
        defect = _polyline_mask(size, [bent], LEAD_W * 1.6) & ~straight
        leads[k] = bent
    elif label == "cut_lead":
        k = int(rng.integers(3))
        # The missing piece's round end also covers the cut face on what is left.
        leads[k], missing = _cut(leads[k], float(rng.uniform(0.15, 0.6)))
        defect = _polyline_mask(size, [missing], LEAD_W * 1.3)
    elif label == "damaged_case":
        damage = _damage(size, rng)
        # Like MVTec's, the mask is a little generous around the damage.
        defect = cv2.dilate(damage[1], _disk(max(1, round(size * 0.01))))

    color, alpha = _part(size, leads, damage, rng)
    center = (size / 2, size / 2)
    angle, dx, dy = rng.normal(0, 1.0), rng.normal(0, 0.012) * size, rng.normal(0, 0.012) * size
    nominal = placed = _pose(center, angle, dx, dy)
    mask = None
    if defect is not None:
        mask = np.where(_warp(defect.astype(np.float32), nominal) > 127, 255, 0).astype(np.uint8)
    if label == "misplaced":
        how = rng.choice(["missing", "rotated", "shifted"])
        if how == "rotated":
            turn = float(rng.choice([180, 90, -90, rng.choice([-1, 1]) * rng.uniform(25, 160)]))
            placed = _pose(center, angle + turn, dx, dy)
        elif how == "shifted":
            direction = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(0.12, 0.22) * size
            placed = _pose(center, angle + rng.normal(0, 4), dx + dist * np.cos(direction),
                           dy + dist * np.sin(direction))
        # Like MVTec's, the outline is generous: the gaps between the leads are closed.
        outline = cv2.morphologyEx(np.where(alpha > 0.5, 255, 0).astype(np.uint8), cv2.MORPH_CLOSE,
                                   _disk(max(1, round(size * 0.035))))
        outline = cv2.dilate(outline, _disk(max(1, round(size * 0.008)))).astype(np.float32)
        where = _warp(outline, nominal) > 127
        if how == "missing":
            alpha = np.zeros_like(alpha)
        else:
            where |= _warp(outline, placed) > 127
        mask = np.where(where, 255, 0).astype(np.uint8)
    return _composite(board, _warp(color, placed), _warp(alpha, placed), size, rng), mask


def _pose(center, angle, dx, dy) -> np.ndarray:
    m = cv2.getRotationMatrix2D(center, float(angle), 1.0)
    m[:, 2] += (dx, dy)
    return m


def _warp(layer: np.ndarray, m: np.ndarray) -> np.ndarray:
    size = layer.shape[0]
    return cv2.warpAffine(layer, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _pts(xy, size: int) -> np.ndarray:
    return np.round(np.asarray(xy, np.float64) * size * ONE).astype(np.int32).reshape(-1, 1, 2)


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in about [-1, 1] with `cells` bumps across the image."""
    small = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _board(size: int, rng: np.random.Generator) -> np.ndarray:
    """Copper stripboard: copper strips with dark gaps between them and a grid of drilled holes."""
    base = np.array([196, 124, 92], np.float32) * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    texture = 1 + 0.05 * _noise(size, 6, rng) + 0.03 * _noise(size, 40, rng)
    board = base * texture[..., None]
    pitch = 0.222
    ox, oy = rng.uniform(-0.02, 0.02, 2)
    gap = np.array([60, 38, 30], np.float32)
    hole = (28.0, 22.0, 22.0)
    cols = 0.5 + np.arange(-3, 4) * pitch + ox  # the middle lead's hole column is in the middle
    rows = 0.86 + np.arange(-4, 2) * pitch + oy  # the lead ends go into this row of holes
    for c in cols + 0.5 * pitch:
        x0, x1 = _pts([[c - 0.022, 0], [c + 0.022, 1]], size)[:, 0, 0]
        cv2.rectangle(board, (int(x0), 0), (int(x1), size * ONE), gap.tolist(), -1, cv2.LINE_AA, SHIFT)
    for cx in cols:
        for cy in rows:
            p = _pts([cx, cy], size)[0, 0]
            cv2.circle(board, (int(p[0]), int(p[1])), int(0.046 * size * ONE), (150.0, 95.0, 75.0), -1,
                       cv2.LINE_AA, SHIFT)
            cv2.circle(board, (int(p[0]), int(p[1])), int(0.04 * size * ONE), hole, -1, cv2.LINE_AA, SHIFT)
    return board


def _lead_paths(rng: np.random.Generator) -> list[np.ndarray]:
    """Three lead center lines (unit coordinates): the outer two kink outwards, like a TO-92 on a board."""
    j = lambda: rng.normal(0, 0.006)  # noqa: E731 - a tiny jitter per point reads best inline
    left = [[0.40, 0.55], [0.40 + j(), 0.65 + j()], [0.28 + j(), 0.76 + j()], [0.28 + j(), 0.86 + j()]]
    mid = [[0.50, 0.55], [0.50 + j(), 0.70], [0.50 + j(), 0.86 + j()]]
    right = [[0.60, 0.55], [0.60 + j(), 0.65 + j()], [0.72 + j(), 0.76 + j()], [0.72 + j(), 0.86 + j()]]
    return [np.array(p, np.float64) for p in (left, mid, right)]


def _bend(path: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bend the lead sideways below the case: from a point on it, the rest swings out by 35 to 80 degrees."""
    pivot = np.array([path[0, 0], rng.uniform(0.62, 0.68)])
    length = np.linalg.norm(np.diff(path, axis=0), axis=1).sum() - (pivot[1] - path[0, 1])
    # Outer leads mostly bend further out; the middle one either way.
    off = path[-1, 0] - 0.5
    outward = float(np.sign(off)) if abs(off) > 0.1 else float(rng.choice([-1.0, 1.0]))
    side = outward if rng.random() < 0.7 else -outward
    a = np.deg2rad(rng.uniform(35, 80))
    knee = pivot + length * 0.6 * np.array([side * np.sin(a), np.cos(a)])
    a2 = a + np.deg2rad(rng.uniform(-25, 15))
    end = knee + length * 0.4 * np.array([side * np.sin(a2), np.cos(a2)])
    return np.array([path[0], pivot, knee, end])


def _cut(path: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """The lead cut after `keep` of its length below the case: (the part left, the part cut off)."""
    start = 0.60 - path[0, 1]  # the part hidden under the case does not count
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    at = start + keep * (seg.sum() - start)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    j = int(np.searchsorted(cum, at)) - 1
    cut = path[j] + (path[j + 1] - path[j]) * (at - cum[j]) / seg[j]
    return np.vstack([path[: j + 1], cut]), np.vstack([cut, path[j + 1:]])


def _polyline_mask(size: int, paths: list[np.ndarray], width: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for path in paths:
        _thick_line(mask, path, size, width, 255)
    # Only the parts below the case are visible; the case hides the lead roots.
    mask[: int(CASE[3] * size) - 1] = 0
    return mask


def _thick_line(img: np.ndarray, path: np.ndarray, size: int, width: float, color) -> None:
    t = max(1, int(round(width * size)))
    for p, q in zip(path[:-1], path[1:], strict=True):
        a, b = _pts(p, size)[0, 0], _pts(q, size)[0, 0]
        cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), color, t, cv2.LINE_AA, SHIFT)


def _damage(size: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """Damage to the case: (kind, uint8 mask in the canonical pose).

    chip: a jagged bite out of an edge or corner; abrasion: a rough scuffed patch on the face (the
    commonest kind in MVTec); scratch: a thin wandering line of scraped plastic.
    """
    x0, y0, x1, y1 = CASE
    mask = np.zeros((size, size), np.uint8)
    kind = str(rng.choice(["chip", "abrasion", "scratch"], p=[0.4, 0.35, 0.25]))
    if kind == "scratch":
        start = np.array([rng.uniform(x0 + 0.03, x1 - 0.03), rng.uniform(y0 + 0.03, y1 - 0.1)])
        a = rng.uniform(0, np.pi)
        ts = np.linspace(0, 1, 6)[:, None]
        bend = np.sin(ts * np.pi) * rng.normal(0, 0.02)
        line = (start + ts * rng.uniform(0.12, 0.25) * np.array([np.cos(a), np.sin(a)])
                + bend * np.array([-np.sin(a), np.cos(a)]))
        _thick_line(mask, np.clip(line, [x0 + 0.01, y0 + 0.01], [x1 - 0.01, y1 - 0.01]), size, 0.016, 255)
        return kind, mask
    if kind == "chip":
        r = rng.uniform(0.07, 0.11)
        edge = rng.choice(["top", "left", "right", "corner"])
        if edge == "top":
            c = np.array([rng.uniform(x0 + 0.08, x1 - 0.08), y0])
        elif edge == "left":
            c = np.array([x0, rng.uniform(y0 + 0.08, y1 - 0.08)])
        elif edge == "right":
            c = np.array([x1, rng.uniform(y0 + 0.08, y1 - 0.08)])
        else:
            c = np.array([rng.choice([x0, x1]), rng.choice([y0, y1 - 0.05])])
    else:
        r = rng.uniform(0.04, 0.075)
        c = np.array([rng.uniform(x0 + 0.07, x1 - 0.07), rng.uniform(y0 + 0.07, y1 - 0.07)])
    ang = np.sort(rng.uniform(0, 2 * np.pi, 11))
    rad = r * rng.uniform(0.55, 1.15, 11)
    poly = c + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1)
    cv2.fillPoly(mask, [_pts(poly, size)], 255, cv2.LINE_AA, SHIFT)
    mask = np.where(mask > 127, 255, 0).astype(np.uint8)
    mask[: int(y0 * size), :] = 0
    mask[:, : int(x0 * size)] = 0
    mask[:, int(np.ceil(x1 * size)):] = 0
    return kind, mask


def _part(size: int, leads: list[np.ndarray], damage, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The transistor in the canonical pose: RGB float32 (0..255) and alpha float32 (0..1)."""
    # Leads: tin-plated metal, a dull base with a bright streak along the middle and rough solder texture.
    lead_a = np.zeros((size, size), np.float32)
    shine = np.zeros((size, size), np.float32)
    for path in leads:
        _thick_line(lead_a, path, size, LEAD_W, 1.0)
        _thick_line(shine, path, size, LEAD_W * 0.35, 1.0)
    blur = max(1, size // 170) * 2 + 1
    shine = cv2.GaussianBlur(shine, (blur, blur), 0)
    rough = 1 + 0.07 * _noise(size, 30, rng) + 0.04 * _noise(size, 90, rng)
    metal = (105 + 105 * shine) * rough
    color = np.repeat(metal[..., None], 3, axis=2) * np.array([1.0, 1.0, 1.04], np.float32)
    alpha = lead_a

    # Case: black plastic, a soft vertical reflection band, a slightly lighter lip at the top edge.
    x0, y0, x1, y1 = CASE
    case_a = np.zeros((size, size), np.float32)
    p0, p1 = _pts([x0, y0], size)[0, 0], _pts([x1, y1], size)[0, 0]
    cv2.rectangle(case_a, tuple(p0.tolist()), tuple(p1.tolist()), 1.0, -1, cv2.LINE_AA, SHIFT)
    xs = np.linspace(0, 1, size, dtype=np.float32)
    band_x = rng.uniform(x0 + 0.05, x1 - 0.05)
    band = np.exp(-((xs - band_x) / rng.uniform(0.03, 0.07)) ** 2) * rng.uniform(18, 40)
    edge = np.exp(-((xs - x1 + 0.015) / 0.012) ** 2) * 25
    plastic = np.float32(16) + band[None, :] + edge[None, :] + 4 * _noise(size, 30, rng)
    ys = np.linspace(0, 1, size, dtype=np.float32)[:, None]
    plastic = plastic + 30 * np.exp(-((ys - y0 - 0.012) / 0.01) ** 2)
    case_rgb = np.repeat(plastic[..., None], 3, axis=2) * np.array([0.95, 0.98, 1.12], np.float32)

    # The moulded dimple and the printed type mark in light grey ink.
    cxy = _pts([0.5, 0.36], size)[0, 0]
    cv2.circle(case_rgb, tuple(cxy.tolist()), int(0.058 * size * ONE), (48.0, 50.0, 56.0), max(1, size // 200),
               cv2.LINE_AA, SHIFT)
    ink = float(rng.uniform(130, 185))
    _text(case_rgb, "BC547", (0.5, 0.485), 0.22, size, ink)
    _text(case_rgb, f"C{int(rng.integers(10, 99))}", (0.5, 0.545), 0.09, size, ink * 0.9)

    if damage is not None:
        kind, dmask = damage
        d = dmask.astype(np.float32)[..., None] / 255
        if kind == "chip":
            # A bite out of the case shows the board through it, framed by a rim of broken, lighter plastic.
            hole = cv2.erode(dmask, _disk(max(1, size // 100))).astype(np.float32) / 255
            broken = 95 + 25 * _noise(size, 40, rng) + 15 * _noise(size, 120, rng)
            case_rgb = case_rgb * (1 - d) + broken[..., None] * d
            case_a = case_a * (1 - hole)
        else:
            # Scuffed plastic scatters light: grey and grainy, brightest in the middle of the mark.
            soft = cv2.GaussianBlur(d[..., 0], (0, 0), max(0.6, size / 400))[..., None]
            scuff = (90 if kind == "abrasion" else 120) + 12 * _noise(size, 150, rng) + 12 * _noise(size, 40, rng)
            case_rgb = case_rgb * (1 - soft) + scuff[..., None] * soft

    color = color * (1 - case_a[..., None]) + case_rgb * case_a[..., None]
    alpha = np.maximum(alpha, case_a)
    return color.astype(np.float32), alpha


def _text(img: np.ndarray, text: str, center, width: float, size: int, ink: float) -> None:
    """Print `text` in grey `ink`, `width` of the image wide (putText draws on uint8 only, so via a coverage map)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    thick = max(1, round(size / 450))
    (w, h), _ = cv2.getTextSize(text, font, 1.0, thick)
    scale = width * size / w
    org = (int(center[0] * size - w * scale / 2), int(center[1] * size + h * scale / 2))
    cover = np.zeros(img.shape[:2], np.uint8)
    cv2.putText(cover, text, org, font, scale, 255, thick, cv2.LINE_AA)
    rows = slice(max(0, int(org[1] - h * scale) - 2 * thick), org[1] + 2 * thick)  # only the band with text
    a = cover[rows].astype(np.float32)[..., None] / 255
    img[rows] = img[rows] * (1 - a) + np.float32(ink) * a


def _composite(board: np.ndarray, color: np.ndarray, alpha: np.ndarray, size: int,
               rng: np.random.Generator) -> np.ndarray:
    """Part over board with a soft drop shadow, then per-image lighting and sensor noise."""
    # A shadow this soft loses nothing when blurred at a quarter of the size, and that is 16x cheaper.
    small = cv2.resize(alpha, (max(8, size // 4),) * 2, interpolation=cv2.INTER_AREA)
    shadow = cv2.resize(cv2.GaussianBlur(small, (0, 0), 0.015 * size / 4), (size, size),
                        interpolation=cv2.INTER_LINEAR)
    shadow = np.roll(shadow, (int(0.012 * size), int(0.008 * size)), axis=(0, 1))
    scene = board * (1 - 0.55 * shadow[..., None])
    scene = scene * (1 - alpha[..., None]) + color * alpha[..., None]
    gx, gy = rng.normal(0, 0.12, 2)
    lin = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    light = rng.uniform(0.82, 1.12) * (1 + gx * lin[None, :] + gy * lin[:, None])
    tint = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    scene = scene * light[..., None] * tint + 2 * rng.standard_normal((size, size, 3), dtype=np.float32)
    return np.clip(scene + 0.5, 0, 255).astype(np.uint8)
