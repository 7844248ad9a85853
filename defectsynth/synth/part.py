"""Where the part is in an image of an aligned product, from the good training images alone.

The per-pixel median of a few good images keeps the part (it sits at nearly the same place in
every image) and blurs what moves (a board shifted under it). The part is where that median differs
from the background colour, which is read off the image border. In one image the part is found by
matching the median's part region at quarter resolution, so a shift of the part is one offset.
"""

from __future__ import annotations

import cv2
import numpy as np

from defectsynth.io import read_image

MEDIAN_IMAGES = 25  # enough for a stable median; more only costs decode time
SEARCH = 0.08  # how far (share of the image side) a part may sit from its median place


def _lab(image: np.ndarray) -> np.ndarray:
    rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _disk(radius: int) -> np.ndarray:
    radius = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _largest(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if n <= 1:
        return mask
    return (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)


def foreground(image: np.ndarray, background_lab: np.ndarray) -> np.ndarray:
    """Pixels whose colour is far from the background's (Otsu threshold on the Lab distance)."""
    dist = np.linalg.norm(_lab(image) - background_lab, axis=2)
    dist8 = np.clip(dist * (255.0 / max(float(dist.max()), 1e-6)), 0, 255).astype(np.uint8)
    _, fg = cv2.threshold(dist8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return fg > 0


def background_period(image: np.ndarray, hide: np.ndarray, axis: int) -> int:
    """The lag (px, along `axis`) at which the background best matches itself; 0 when it does not repeat."""
    s = 4 if min(image.shape[:2]) >= 256 else 1
    g = cv2.resize(_gray(image), None, fx=1 / s, fy=1 / s, interpolation=cv2.INTER_AREA).astype(np.float32)
    ok = cv2.resize(hide.astype(np.uint8), g.shape[::-1], interpolation=cv2.INTER_NEAREST) == 0
    if axis == 0:
        g, ok = g.T, ok.T
    g = g - g[ok].mean()
    best, best_score = 0, 0.5  # below this correlation the background is not periodic enough to copy
    for lag in range(max(2, g.shape[1] // 40), g.shape[1] // 3):
        both = ok[:, :-lag] & ok[:, lag:]
        if both.sum() < 0.05 * g.size:
            break
        a, b = g[:, :-lag][both], g[:, lag:][both]
        score = float((a * b).mean() / (np.sqrt((a * a).mean() * (b * b).mean()) + 1e-6))
        if score > best_score:
            best, best_score = lag, score
    if best == 0:
        return 0
    # refine at full resolution around the coarse lag
    full = _gray(image).astype(np.float32)
    okf = ~hide
    if axis == 0:
        full, okf = full.T, okf.T
    full = full - full[okf].mean()
    scores = {}
    for lag in range(max(1, best * s - s), best * s + s + 1):
        both = okf[:, :-lag] & okf[:, lag:]
        a, b = full[:, :-lag][both], full[:, lag:][both]
        scores[lag] = float((a * b).mean() / (np.sqrt((a * a).mean() * (b * b).mean()) + 1e-6))
    return max(scores, key=scores.get)


def fill_background(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`image` with `region` replaced by background copied from whole periods away (inpainting the rest)."""
    h, w = image.shape[:2]
    out = image.copy()
    todo = region.copy()
    for axis in (1, 0):
        period = background_period(image, region, axis)
        if not period:
            continue
        length = w if axis == 1 else h
        for k in range(1, length // period + 1):
            for step in (k * period, -k * period):
                if not todo.any():
                    return out
                dy, dx = (0, step) if axis == 1 else (step, 0)
                m = np.float32([[1, 0, dx], [0, 1, dy]])
                moved = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_NEAREST)
                usable = cv2.warpAffine((~region).astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST,
                                        borderValue=0) > 0
                take = todo & usable
                out[take] = moved[take]
                todo &= ~take
    if todo.any():
        out = cv2.inpaint(out, todo.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    return out


class PartModel:
    """The part's usual region (template), and where it sits in a given image."""

    def __init__(self, good_images: list[np.ndarray]):
        stack = np.stack(good_images)
        self.median = np.median(stack, axis=0).astype(np.uint8)
        h, w = self.median.shape[:2]
        side = min(h, w)
        border = max(2, side // 16)
        lab = _lab(self.median)
        ring = np.concatenate([lab[:border].reshape(-1, 3), lab[-border:].reshape(-1, 3),
                               lab[:, :border].reshape(-1, 3), lab[:, -border:].reshape(-1, 3)])
        self.background_lab = np.median(ring, axis=0).astype(np.float32)
        self.scale = 4 if side >= 256 else 2
        self.lead_zone = np.zeros((h, w), np.uint8)
        body = self._body(self.median)
        self._set_search_patch(body)
        # thin bright structures (leads, pins) blur away in the median; keep where they often are
        near = cv2.dilate(body, _disk(side // 12)) > 0
        often = np.mean([_lab(im)[:, :, 0] > self.background_lab[0] + 25 for im in good_images], axis=0) > 0.1
        often = cv2.morphologyEx(often.astype(np.uint8), cv2.MORPH_CLOSE, _disk(side // 64))
        _, labels = cv2.connectedComponents(often)
        touching = np.unique(labels[near & (often > 0)])
        self.lead_zone = (np.isin(labels, touching[touching > 0]) & (body == 0)).astype(np.uint8)
        fg = body | self.lead_zone
        area = fg.mean()
        # no clear part (a texture, or a part filling the frame): treat the whole image as the part
        self.found = 0.005 < area < 0.85
        self.template = fg.astype(bool) if self.found else np.ones((h, w), bool)
        ys, xs = np.nonzero(self.template)
        self.box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        # the background without the part: in one image the part is then what differs from it, and the
        # background's own dark features (holes) are not mistaken for the part
        grown = cv2.dilate(self.template.astype(np.uint8), _disk(side // 32)) > 0
        self.board_lab = _lab(fill_background(self.median, grown)) if self.found else None

    def _set_search_patch(self, body: np.ndarray) -> None:
        h, w = self.median.shape[:2]
        ys, xs = np.nonzero(body) if body.any() else (np.array([0, h - 1]), np.array([0, w - 1]))
        y0, y1, x0, x1 = ys.min() // self.scale, ys.max() // self.scale + 1, xs.min() // self.scale, xs.max() // self.scale + 1
        small = cv2.resize(_gray(self.median), (w // self.scale, h // self.scale), interpolation=cv2.INTER_AREA)
        self._patch = small[y0:y1, x0:x1].astype(np.float32)
        self._at = (y0, x0)

    def _body(self, image: np.ndarray) -> np.ndarray:
        side = min(image.shape[:2])
        dark = foreground(image, self.background_lab) & (_lab(image)[:, :, 0] <= self.background_lab[0])
        # dark blobs larger than the background's own dark features (holes, stripes) are the part's body
        return _largest(cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, _disk(side // 20)))

    def segment(self, image: np.ndarray) -> np.ndarray:
        """uint8 mask of the part in `image` (1 = part): what differs from the part-free background
        near the part's usual place."""
        side = min(image.shape[:2])
        dy, dx = self.offset(image)
        near = cv2.dilate(shift(self.template.astype(np.uint8), dy, dx), _disk(side // 10)) > 0
        dist = np.linalg.norm(_lab(image) - self.board_lab, axis=2)
        dist8 = np.clip(dist * 2, 0, 255).astype(np.uint8)
        thr, _ = cv2.threshold(dist8[near], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        fg = ((dist8 > thr) & near).astype(np.uint8)
        # a board shifted by a few pixels leaves thin rims around its holes; opening removes them
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _disk(side // 128))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg)
        if n > 1:
            areas = stats[1:, cv2.CC_STAT_AREA]
            fg = np.isin(labels, 1 + np.nonzero(areas >= 0.02 * areas.max())[0]).astype(np.uint8)
        return cv2.morphologyEx(fg, cv2.MORPH_CLOSE, _disk(side // 128))

    @classmethod
    def from_paths(cls, paths: list[str]) -> PartModel:
        idx = np.linspace(0, len(paths) - 1, min(MEDIAN_IMAGES, len(paths))).round().astype(int)
        images = [read_image(paths[i]) for i in sorted(set(idx.tolist()))]
        shape = images[0].shape
        return cls([im for im in images if im.shape == shape])

    def offset(self, image: np.ndarray) -> tuple[int, int]:
        """(dy, dx) from the part's median place to its place in `image`."""
        if not self.found or image.shape[:2] != self.median.shape[:2]:
            return 0, 0
        h, w = image.shape[:2]
        s = self.scale
        small = cv2.resize(_gray(image), (w // s, h // s), interpolation=cv2.INTER_AREA).astype(np.float32)
        r = max(1, int(SEARCH * min(h, w) / s))
        ph, pw = self._patch.shape
        y0, x0 = self._at
        top, left = max(0, y0 - r), max(0, x0 - r)
        area = small[top:min(small.shape[0], y0 + ph + r), left:min(small.shape[1], x0 + pw + r)]
        if area.shape[0] < ph or area.shape[1] < pw:
            return 0, 0
        score = cv2.matchTemplate(area, self._patch, cv2.TM_CCOEFF_NORMED)
        _, _, _, (bx, by) = cv2.minMaxLoc(score)
        return (top + by - y0) * s, (left + bx - x0) * s

    def region(self, image: np.ndarray, grow: int = 0) -> np.ndarray:
        """Where the part is in `image` (bool), grown by `grow` px; everything when no part was found."""
        if not self.found or image.shape[:2] != self.median.shape[:2]:
            return np.ones(image.shape[:2], bool)
        mask = self.segment(image)
        if mask.mean() < 0.25 * self.template.mean():  # the part is missing or unusual: its usual place
            dy, dx = self.offset(image)
            mask = shift(self.template.astype(np.uint8), dy, dx)
        if grow > 0:
            mask = cv2.dilate(mask, _disk(grow))
        return mask > 0


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate by whole pixels; what comes in from outside is zero."""
    h, w = image.shape[:2]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
