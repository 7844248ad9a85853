"""Where the part is in an image of an aligned product, learned from the good training images alone,
and how to rebuild the background where it was.

The per-pixel median of a few good images shows the part at its usual place. Its body is the large
dark-or-bright blob that differs from the background colour (read off the image border); thin
structures (leads, pins) blur in the median, so the places where they often are form a lead zone.
In one image the part is found by matching the median's body, then segmenting near it. All of this
runs at WORK_SIDE px, whatever the image size; masks are scaled back up.

Backgrounds such as a perforated board repeat; their period is measured once, and the background
behind a part is rebuilt from the image itself, whole periods away. Where the part's thin structures
repeat with the same period (a transistor's leads go into neighbouring holes), `repeat_steps` says so.
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

from defectsynth.io import read_image

MEDIAN_IMAGES = 25  # enough for a stable median; more only costs decode time
WORK_SIDE = 256  # segmentation resolution: masks are dilated anyway, and it keeps 1024 px images fast
SEARCH = 0.08  # how far (share of the image side) a part may sit from its median place
MIRROR_QUANTILE = 90  # the mirror test compares this percentile of the distances over the part's place
MIRROR_SEARCH = 0.03  # how far (share of the width) the mirror axis may move off the body's centre
REPEAT_ELONGATION = 1.5  # thin structures this many times longer one way than the other repeat the other way


def _lab(image: np.ndarray) -> np.ndarray:
    rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _disk(radius: float) -> np.ndarray:
    radius = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return np.sqrt(np.einsum("...k,...k->...", d, d))


def _keep(mask: np.ndarray, share: float) -> np.ndarray:
    """The connected regions of `mask` at least `share` of the largest one's area."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    if n <= 2:
        return mask.astype(np.uint8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return np.isin(labels, 1 + np.nonzero(areas >= share * areas.max())[0]).astype(np.uint8)


def _slices(step: int, length: int) -> tuple[slice, slice]:
    """(destination, source) slices along one axis for out[x] = image[x - step]."""
    return slice(max(0, step), length + min(0, step)), slice(max(0, -step), length - max(0, step))


def _moves(shape: tuple[int, int], periods: tuple[int, int]):
    """(dst, src) index pairs for copies whole periods away, nearest first, horizontal before vertical."""
    h, w = shape
    for axis, period in ((1, periods[1]), (0, periods[0])):
        if not period:
            continue
        length = w if axis == 1 else h
        for k in range(1, length // period + 1):
            for step in (k * period, -k * period):
                d, s = _slices(step, length)
                yield ((slice(None), d), (slice(None), s)) if axis == 1 else ((d, slice(None)), (s, slice(None)))


def background_period(image: np.ndarray, hide: np.ndarray, axis: int, around: int | None = None) -> int:
    """The lag (px, along `axis`) at which the background (outside `hide`) best matches itself, searched
    near `around` when given; 0 when it does not repeat."""
    g = _gray(image).astype(np.float32)
    ok = ~hide
    if axis == 0:
        g, ok = g.T, ok.T
    g = g - g[ok].mean()
    lags = range(max(1, around - 2), around + 3) if around else range(max(2, g.shape[1] // 40), g.shape[1] // 3)
    best, best_score = 0, 0.5  # below this correlation the background is not periodic enough to copy
    for lag in lags:
        both = ok[:, :-lag] & ok[:, lag:]
        if both.sum() < 0.01 * g.size:  # a large part leaves little background beside itself at some lags
            continue
        a, b = g[:, :-lag][both], g[:, lag:][both]
        score = float((a * b).mean() / (np.sqrt((a * a).mean() * (b * b).mean()) + 1e-6))
        if score > best_score:
            best, best_score = lag, score
    return best


def fill_background(image: np.ndarray, region: np.ndarray, periods: tuple[int, int],
                    free: np.ndarray | None = None) -> np.ndarray:
    """`image` with `region` rebuilt from background whole periods (dy, dx) away (from `free` pixels only,
    when given); cv2.inpaint for the rest."""
    out = image.copy()
    todo = region.copy()
    free = ~region if free is None else free & ~region
    for dst, src in _moves(region.shape, periods):
        take = todo[dst] & free[src]
        if take.any():
            out[dst][take] = image[src][take]
            todo[dst] &= ~take
        if not todo.any():
            return out
    # inpainting is smooth anyway and slow on large regions: do it at WORK_SIDE and scale it back up
    h, w = todo.shape
    f = min(1.0, WORK_SIDE / min(h, w))
    size = (max(8, round(w * f)), max(8, round(h * f)))
    small = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    hole = cv2.dilate(cv2.resize(todo.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST), _disk(1))
    painted = cv2.resize(cv2.inpaint(small, hole * 255, 3, cv2.INPAINT_TELEA), (w, h), interpolation=cv2.INTER_LINEAR)
    out[todo] = painted[todo]
    return out


class PartModel:
    """The part's usual region (template) and the background's period, from good images."""

    def __init__(self, good_images: list[np.ndarray]):
        h, w = good_images[0].shape[:2]
        self.full_shape = (h, w)
        self.factor = min(1.0, WORK_SIDE / min(h, w))
        self.work = (max(8, round(w * self.factor)), max(8, round(h * self.factor)))  # cv2 (width, height)
        small = [self._small(im) for im in good_images]
        self.median = np.median(np.stack(small), axis=0).astype(np.uint8)
        side = min(self.median.shape[:2])
        border = max(2, side // 16)
        lab = _lab(self.median)
        ring = np.concatenate([lab[:border].reshape(-1, 3), lab[-border:].reshape(-1, 3),
                               lab[:, :border].reshape(-1, 3), lab[:, -border:].reshape(-1, 3)])
        self.background_lab = np.median(ring, axis=0).astype(np.float32)
        body = self._body(self.median)
        # thin bright structures (leads, pins) blur away in the median; keep where they often are
        near = cv2.dilate(body, _disk(side / 12)) > 0
        often = np.mean([_lab(im)[:, :, 0] > self.background_lab[0] + 25 for im in small], axis=0) > 0.1
        often = cv2.morphologyEx(often.astype(np.uint8), cv2.MORPH_CLOSE, _disk(side / 64))
        _, labels = cv2.connectedComponents(often)
        touching = np.unique(labels[near & (often > 0)])
        self.lead_zone = (np.isin(labels, touching[touching > 0]) & (body == 0)).astype(np.uint8)
        template = body | self.lead_zone
        # no clear part (a texture, or a part filling the frame): the whole image is the part
        self.found = bool(body.any()) and 0.005 < template.mean() < 0.85
        self.template = template if self.found else np.ones_like(template)
        ys, xs = np.nonzero(body if self.found else self.template)
        self._patch = self.median[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        self._patch = _gray(self._patch).astype(np.float32)
        self._at = (int(ys.min()), int(xs.min()))
        self._small_goods = small  # kept for mirror_symmetry, which only train-eval asks for
        hide = cv2.dilate(self.template, _disk(side / 32)) > 0
        if not self.found:
            hide = np.zeros_like(hide)
        self.work_periods = (background_period(self.median, hide, 0), background_period(self.median, hide, 1))
        # the full-size period, refined on one full-size image around the scaled-up estimate
        big_hide = cv2.resize(hide.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        self.periods = tuple(
            background_period(good_images[0], big_hide, axis, around=round(p / self.factor)) if p else 0
            for axis, p in enumerate(self.work_periods))

    @cached_property
    def mirror_symmetry(self) -> tuple[float, float]:
        """(ratio, axis offset) of the part's left-right mirror symmetry; (inf, 0) when no part is found.

        The median part is mirrored across the vertical through its body's centre, give or take
        MIRROR_SEARCH of the width (the search is kept that narrow so that a one-sided feature cannot pull
        the mirror onto itself). `ratio`: the MIRROR_QUANTILE percentile of its LAB distance to the median
        over the part's usual place, as a multiple of the same percentile of good parts' distances to the
        median; near or below 1 a mirrored good part looks like another good part, while a one-sided
        feature covering a tenth of the part or more (a colour order, a notch, a side tab) makes it
        several times larger. A small marking such as text is below what this sees. `axis offset`: the
        mirror axis's distance from the image's centre column, a share of the width."""
        if not self.found:
            return float("inf"), 0.0
        w = self.median.shape[1]
        lab = _lab(self.median)
        place = self.template > 0
        axis = self._at[1] + (self._patch.shape[1] - 1) / 2
        mirror = cv2.flip(self.median, 1)  # x -> w - 1 - x; across column c: x -> 2c - x
        reach = max(1, round(MIRROR_SEARCH * w))
        mirrored, dx = min((np.percentile(_dist(lab, _lab(translate(mirror, 0, 2 * axis - (w - 1) + d)))[place],
                                          MIRROR_QUANTILE), d) for d in range(-reach, reach + 1))
        goods = []
        for image in self._small_goods:
            dy, dx_good = self._offset_small(image)
            goods.append(_dist(lab, _lab(translate(image, -dy, -dx_good)))[place])
        spread = float(np.percentile(np.concatenate(goods), MIRROR_QUANTILE))
        return float(mirrored) / max(spread, 1e-6), float((axis + dx / 2 - (w - 1) / 2) / w)

    @classmethod
    def from_paths(cls, paths: list[str]) -> PartModel:
        idx = np.linspace(0, len(paths) - 1, min(MEDIAN_IMAGES, len(paths))).round().astype(int)
        images = [read_image(paths[i]) for i in sorted(set(idx.tolist()))]
        return cls([im for im in images if im.shape == images[0].shape])

    def _small(self, image: np.ndarray) -> np.ndarray:
        if image.shape[1::-1] == self.work:
            return image
        return cv2.resize(image, self.work, interpolation=cv2.INTER_AREA)

    def _big(self, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if mask.shape == shape[:2]:
            return mask > 0
        smooth = cv2.resize(mask.astype(np.float32), shape[1::-1], interpolation=cv2.INTER_LINEAR)
        return smooth > 0.5

    def _body(self, small: np.ndarray) -> np.ndarray:
        side = min(small.shape[:2])
        lab = _lab(small)
        dist = _dist(lab, self.background_lab)
        dist8 = np.clip(dist * (255.0 / max(float(dist.max()), 1e-6)), 0, 255).astype(np.uint8)
        _, fg = cv2.threshold(dist8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        dark = ((fg > 0) & (lab[:, :, 0] <= self.background_lab[0])).astype(np.uint8)
        dark = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, _disk(side / 64))  # glints on the body
        # dark blobs larger than the background's own dark features (holes, stripes) are the body;
        # a square opening keeps a box-shaped body's corners but drops holes half covered by its edge
        square = cv2.getStructuringElement(cv2.MORPH_RECT, (side // 8, side // 8))
        return _keep(cv2.morphologyEx(dark, cv2.MORPH_OPEN, square), 1.0)

    def _offset_small(self, small: np.ndarray) -> tuple[int, int]:
        if not self.found:
            return 0, 0
        g = _gray(small).astype(np.float32)
        r = max(1, int(SEARCH * min(g.shape)))
        ph, pw = self._patch.shape
        y0, x0 = self._at
        top, left = max(0, y0 - r), max(0, x0 - r)
        area = g[top:min(g.shape[0], y0 + ph + r), left:min(g.shape[1], x0 + pw + r)]
        if area.shape[0] < ph or area.shape[1] < pw:
            return 0, 0
        _, _, _, (bx, by) = cv2.minMaxLoc(cv2.matchTemplate(area, self._patch, cv2.TM_CCOEFF_NORMED))
        return top + by - y0, left + bx - x0

    def offset(self, image: np.ndarray) -> tuple[int, int]:
        """(dy, dx) in `image` pixels from the part's usual place to its place in `image`."""
        dy, dx = self._offset_small(self._small(image))
        return round(dy * image.shape[0] / self.work[1]), round(dx * image.shape[1] / self.work[0])

    def _segment_small(self, small: np.ndarray, usual: bool) -> np.ndarray:
        side = min(small.shape[:2])
        dy, dx = self._offset_small(small)
        lab = _lab(small)
        # in the lead zone: grey metal, less coloured than the background and not as dark as its holes
        bg_l, bg_chroma = self.background_lab[0], float(np.hypot(*(self.background_lab[1:] - 128)))
        chroma = np.hypot(lab[:, :, 1] - 128, lab[:, :, 2] - 128)
        zone = cv2.dilate(shift(self.lead_zone, dy, dx), _disk(side / 64)) > 0
        metal = zone & (lab[:, :, 0] > 0.6 * bg_l) & ((chroma < 0.5 * bg_chroma) | (lab[:, :, 0] > bg_l + 25))
        mask = cv2.morphologyEx(self._body(small) | metal.astype(np.uint8), cv2.MORPH_CLOSE,
                                _disk(side / 128))
        # specks (bits of holes or glints in the lead zone) are not the part
        mask = _keep(mask, 0.005)
        return mask | shift(self.template, dy, dx) if usual else mask

    def region(self, image: np.ndarray, grow: int = 0, usual: bool = True) -> np.ndarray:
        """Where the part is in `image` (bool, image size), grown by `grow` px; everything when no part.
        `usual` adds the part's usual place (moved with it), so a part the segmentation only half finds is
        still wholly covered; without it the mask hugs the part."""
        if not self.found:
            return np.ones(image.shape[:2], bool)
        mask = self._big(self._segment_small(self._small(image), usual), image.shape)
        if grow > 0:
            mask = cv2.dilate(mask.astype(np.uint8), _disk(grow)) > 0
        return mask

    @cached_property
    def repeat_steps(self) -> list[tuple[int, int]]:
        """(dy, dx) in full-size px: one background period either way across the part's thin structures
        (a transistor's leads point down and sit one board pitch apart side by side), so that what happens
        to one lead can happen to its neighbour. Across: the thin structures' zone is at least
        REPEAT_ELONGATION times as long one way as the other, and the background repeats the other way.
        Empty for a part without thin structures, a plain background or no part."""
        if not self.found or not self.lead_zone.any():
            return []
        count, labels = cv2.connectedComponents(self.lead_zone)
        spread = np.zeros(2)  # summed squared distances from each structure's own centre, along y and x
        for i in range(1, count):
            coords = np.argwhere(labels == i)
            spread += ((coords - coords.mean(axis=0)) ** 2).sum(axis=0)
        if spread[0] >= REPEAT_ELONGATION * spread[1]:
            across = 1  # long up and down: they repeat side by side
        elif spread[1] >= REPEAT_ELONGATION * spread[0]:
            across = 0
        else:
            return []
        period = self.periods[across]
        if not period:
            return []
        return [(0, period), (0, -period)] if across == 1 else [(period, 0), (-period, 0)]

    def body(self, image: np.ndarray) -> np.ndarray:
        """Where the part's body is in `image` (bool, image size): its large blob, without the thin structures."""
        return self._big(self._body(self._small(image)), image.shape)

    def lead_zone_at(self, image: np.ndarray) -> np.ndarray:
        """Where the part's thin structures usually are (bool, image size), moved by its offset in `image`."""
        dy, dx = self._offset_small(self._small(image))
        return self._big(shift(self.lead_zone, dy, dx), image.shape)

    def usual_place(self, image: np.ndarray) -> np.ndarray:
        """Where the part usually is (bool, image size), moved by its offset in `image`."""
        small = self._small(image)
        dy, dx = self._offset_small(small)
        return self._big(shift(self.template, dy, dx), image.shape)

    def _unlike_background(self, small: np.ndarray, hide: np.ndarray) -> np.ndarray:
        """LAB distance (work size) from each pixel to the background: to its own copies whole periods away
        (outside `hide`) on a repeating background, to the border colour on a plain one."""
        lab = _lab(small)
        if not any(self.work_periods):
            return _dist(lab, self.background_lab)
        diff = np.full(hide.shape, np.inf, np.float32)
        for n, (dst, src) in enumerate(_moves(hide.shape, self.work_periods)):
            if n == 4:  # the nearest two periods either way are enough to tell the part from the board
                break
            d = np.where(~hide[src], _dist(lab[dst], lab[src]), np.inf)
            diff[dst] = np.minimum(diff[dst], d)
        return diff

    def background_like(self, image: np.ndarray) -> np.ndarray:
        """Where `image` shows plain background (bool, image size): it repeats with the board's period, or
        matches the border colour; never inside the part's usual body."""
        small = self._small(image)
        body = cv2.dilate(self._body(small), _disk(min(small.shape[:2]) / 64)) > 0
        plain = (self._unlike_background(small, body) < 30) & ~body
        return self._big(plain.astype(np.uint8), image.shape)

    def extend(self, image: np.ndarray, region: np.ndarray) -> np.ndarray:
        """`region` plus what touches it and does not repeat with the background's period (the ends of a
        part's leads reaching into the board, say)."""
        if not any(self.work_periods):
            return region
        small = self._small(image)
        hide = cv2.resize(region.astype(np.uint8), self.work, interpolation=cv2.INTER_NEAREST) > 0
        diff = self._unlike_background(small, hide)
        side = min(hide.shape)
        odd = cv2.morphologyEx(((diff > 30) & np.isfinite(diff)).astype(np.uint8), cv2.MORPH_OPEN, _disk(1))
        _, labels = cv2.connectedComponents(odd)
        near = cv2.dilate(hide.astype(np.uint8), _disk(side / 64)) > 0
        touching = np.unique(labels[near & (odd > 0)])
        grown = np.isin(labels, touching[touching > 0]).astype(np.uint8)
        return region | self._big(cv2.morphologyEx(grown, cv2.MORPH_CLOSE, _disk(side / 128)), region.shape)

    def fill(self, image: np.ndarray, region: np.ndarray, free: np.ndarray | None = None) -> np.ndarray:
        """`image` with the background rebuilt inside `region`, copied from `free` pixels when given."""
        periods = self.periods if image.shape[:2] == self.full_shape else (0, 0)
        return fill_background(image, region, periods, free)


def translate(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """`image` moved by (dy, dx) px, sub-pixel, edges repeated (unlike `shift`, for masks)."""
    h, w = image.shape[:2]
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate a uint8 mask by whole pixels; what comes in from outside is zero."""
    h, w = mask.shape[:2]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
