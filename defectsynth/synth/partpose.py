"""Where the part lies in each image (position, in-plane angle, flip), and what kind of category it is.

    poses = PartPoses.from_paths(good_paths)   # measured on the good training images alone
    poses.kind                                 # "fixed", "rotating" or "texture" (no part)
    m = poses.transfer(src_path, src_image, dst_path, dst_image)   # 2x3: source pixels -> target pixels

In one image the part is the largest blob that differs from the background colour (read off the image
border, as in part.py), holes filled. Its centroid (image moments) gives a first position; the angle
is searched every 10 degrees, mirrored or not, by correlation with the part template, and refined by
cv2.findTransformECC (a Euclidean motion). Where a turned or mirrored fit is about as good as the
template's own orientation (a symmetric part, a busy board around it) the part is taken to lie as the
template does, so fixed parts do not flip between look-alike poses. The template is the median of the
good parts turned into their own frame, so it is sharp however the parts lie. A source defect's own
region is left out of its registration (a bent tip must not pull the pose). All of this runs at
WORK_SIDE px; poses are returned in the image's own pixels.

The category's kind comes from the good images: a texture when most of them have no region that stands
out from the rest (a grid of cells all alike), else fixed when 80% of the measured angles lie within
FIXED_SPREAD degrees of their circular median (a few misregistered images do not make a part rotate),
else rotating.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.io import read_image
from defectsynth.synth.part import PartModel

WORK_SIDE = 160  # registration resolution: the angle comes out within a degree or two, and it stays fast
SAMPLE_IMAGES = 40  # good images measured for the template and the category's kind
FIXED_SPREAD = 10.0  # degrees (see PartPoses.angle_spread) up to which a category counts as fixed
MIRROR_RATIO = 1.3  # a fixed part mirrors when its mirror differs at most this much more than good parts do
MIRROR_CENTRE = 0.03  # ... and its mirror axis lies this close (share of the width) to the image's centre
FLIP_MARGIN = 0.05  # a mirrored fit must beat the plain one by this much correlation: symmetric parts stay unflipped
CELLS = 16  # the texture test's grid
CELL_DIFF = 25.0  # Lab distance (0-255 units) of a cell's mean from the typical cell that marks a part
KINDS = ("fixed", "rotating", "texture")


@dataclass(frozen=True)
class Pose:
    """Part frame -> image pixels: x = (cx, cy) + R(angle) @ F(flip) @ u, angle counter-clockwise in degrees
    (cv2.getRotationMatrix2D's sense), F mirroring across the part's own axis. found=False: no part."""
    cx: float
    cy: float
    angle: float
    flip: bool
    found: bool = True
    score: float = 0.0  # correlation with the template after registration

    def matrix(self) -> np.ndarray:
        """3x3 homogeneous part frame -> image."""
        a = np.deg2rad(self.angle)
        r = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        if self.flip:
            r = r @ np.diag([1.0, -1.0])
        m = np.eye(3)
        m[:2, :2], m[:2, 2] = r, (self.cx, self.cy)
        return m


def transfer_matrix(src: Pose, dst: Pose) -> np.ndarray:
    """2x3 affine taking source-image pixels to the same place on the part in the target image."""
    return (dst.matrix() @ np.linalg.inv(src.matrix()))[:2]


def _lab(image: np.ndarray) -> np.ndarray:
    rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)


def _disk(radius: float) -> np.ndarray:
    radius = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _small(image: np.ndarray) -> tuple[np.ndarray, float]:
    """`image` at WORK_SIDE px on its short side (never enlarged), and the factor to get there."""
    f = min(1.0, WORK_SIDE / min(image.shape[:2]))
    if f == 1.0:
        return image, f
    size = (max(8, round(image.shape[1] * f)), max(8, round(image.shape[0] * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), f


def _border(lab: np.ndarray) -> np.ndarray:
    b = max(2, min(lab.shape[:2]) // 16)
    ring = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3), lab[:, :b].reshape(-1, 3),
                           lab[:, -b:].reshape(-1, 3)])
    return np.median(ring, axis=0)


def has_part(small: np.ndarray) -> bool:
    """Whether some region stands out from the rest: a few grid cells whose mean colour is far from the
    typical cell's. A texture (or an empty background) has none, however busy it is."""
    lab = _lab(small)
    cells = cv2.resize(lab, (CELLS, CELLS), interpolation=cv2.INTER_AREA).reshape(-1, 3)
    far = np.linalg.norm(cells - np.median(cells, axis=0), axis=1) > CELL_DIFF
    return bool(far.mean() >= 0.02)


def foreground_small(small: np.ndarray) -> np.ndarray:
    """The part's blob (uint8 0/1, holes filled) at work size: the largest region far from the border colour."""
    side = min(small.shape[:2])
    lab = _lab(small)
    dist = np.linalg.norm(lab - _border(lab), axis=2)
    dist = cv2.GaussianBlur(dist, (0, 0), max(0.8, side / 160))
    dist8 = np.clip(dist * (255.0 / max(float(dist.max()), 1e-6)), 0, 255).astype(np.uint8)
    _, fg = cv2.threshold(dist8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _disk(side / 100))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg)
    if n < 2:
        return np.zeros(fg.shape, np.uint8)
    blob = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    # fill holes: what the background cannot reach from the border
    outside = np.pad(1 - blob, 1, constant_values=1)
    cv2.floodFill(outside, None, (0, 0), 2)
    return np.maximum(blob, (outside[1:-1, 1:-1] != 2).astype(np.uint8))


def _moments_pose(blob: np.ndarray) -> tuple[float, float, float, float]:
    """(cx, cy, axis angle in degrees counter-clockwise, elongation = major/minor axis ratio)."""
    m = cv2.moments(blob, binaryImage=True)
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    mu20, mu02, mu11 = m["mu20"] / m["m00"], m["mu02"] / m["m00"], m["mu11"] / m["m00"]
    theta = 0.5 * np.arctan2(2 * mu11, mu20 - mu02)  # clockwise on screen, since y points down
    common = np.sqrt(4 * mu11 ** 2 + (mu20 - mu02) ** 2)
    ratio = np.sqrt((mu20 + mu02 + common) / max(mu20 + mu02 - common, 1e-9))
    return cx, cy, -np.rad2deg(theta), float(ratio)


class PartPoses:
    """The part template and the category's kind from good images; each image's pose, cached by path."""

    def __init__(self, good_images: list[np.ndarray]):
        smalls = [_small(im)[0] for im in good_images]
        self.part_share = float(np.mean([has_part(s) for s in smalls]))
        self.angles: list[float] = []
        self.template: np.ndarray | None = None
        self.symmetric = False
        self.flipped_share = 0.0
        self._cache: dict[str, Pose] = {}
        if self.part_share < 0.5:
            self.kind = "texture"
            return
        side = min(smalls[0].shape[:2])
        self.patch = int(side) | 1  # the part's frame, at work size: odd, so the centre is a pixel
        data = [self._prepare(s) for s in smalls]
        data = [d for d in data if d is not None]
        areas = [d[1].sum() for d in data]
        ref = data[int(np.argsort(areas)[len(areas) // 2])]
        self.usual_angle = ref[4]  # the template's frame: the reference part's axis
        self.template = self._canonical(ref[0], ref[2], ref[3], ref[4], False)
        for _ in range(2):  # register to the reference, then to the median of the registered parts
            poses = [self._register(d) for d in data]
            self.template = np.median(np.stack([self._canonical(d[0], p.cx, p.cy, p.angle, p.flip)
                                                for d, p in zip(data, poses, strict=True)]), axis=0)
        self.angles = [p.angle for p in poses]
        self.flipped_share = float(np.mean([p.flip for p in poses]))
        mirror = self.template[::-1].copy()  # the part mirrored across its own axis
        self.symmetric = _ncc(self.template, mirror) > 0.9
        self.kind = "fixed" if self.angle_spread < FIXED_SPREAD else "rotating"

    @classmethod
    def from_paths(cls, paths: list[str]) -> PartPoses:
        idx = np.linspace(0, len(paths) - 1, min(SAMPLE_IMAGES, len(paths))).round().astype(int)
        return cls([read_image(paths[i]) for i in sorted(set(idx.tolist()))])

    @property
    def angle_spread(self) -> float:
        """Degrees within which 80% of the measured angles lie around their circular median (0 to 180)."""
        if not self.angles:
            return 0.0
        a = np.asarray(self.angles)
        dev = np.abs((a[None, :] - a[:, None] + 180) % 360 - 180)  # row i: every angle's distance from a[i]
        median = int(np.argmin(dev.sum(axis=1)))
        return float(np.percentile(dev[median], 80))

    @property
    def flips(self) -> bool:
        """Whether a mirrored part is still a good part: it is mirror-symmetric, or seen both ways."""
        return self.kind == "rotating" and (self.symmetric or 0.1 < self.flipped_share < 0.9)

    def describe(self) -> str:
        if self.kind == "texture":
            return (f"texture: no part stands out in {100 * (1 - self.part_share):.0f}% of the good images; "
                    "defects go anywhere")
        flips = "; mirror images allowed" if self.flips else ""
        return (f"{self.kind} part: 80% of {len(self.angles)} good images within {self.angle_spread:.1f} deg of "
                f"its usual angle (fixed below {FIXED_SPREAD:.0f}){flips}")

    def params(self) -> dict:
        """For provenance."""
        return {"pose_kind": self.kind, "angle_spread": round(self.angle_spread, 1), "flips": self.flips}

    # --- one image ---

    def _prepare(self, small: np.ndarray):
        """(part image, blob, cx, cy, axis angle, elongation) at work size, or None when no part is found."""
        blob = foreground_small(small)
        if blob.sum() < 0.002 * blob.size:
            return None
        lab = _lab(small)
        # the part's lightness against the background's, faded out a little beyond the blob (so thin
        # bright structures beside it, such as leads, count) and zero farther away: lighting and
        # background texture drop out of the registration
        side = min(small.shape[:2])
        near = cv2.GaussianBlur(cv2.dilate(blob, _disk(side / 32)).astype(np.float32), (0, 0), max(1.0, side / 64))
        part = (lab[:, :, 0] - _border(lab)[0]) * near
        return (part, blob, *_moments_pose(blob))

    def _canonical(self, part: np.ndarray, cx: float, cy: float, angle: float, flip: bool) -> np.ndarray:
        """`part` resampled in the part's frame (patch x patch, centre = (cx, cy))."""
        half = self.patch // 2
        m = Pose(cx, cy, angle, flip).matrix() @ np.array([[1, 0, -half], [0, 1, -half], [0, 0, 1.0]])
        return cv2.warpAffine(part, m[:2], (self.patch, self.patch), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)

    def _register(self, data, valid: np.ndarray | None = None) -> Pose:
        """The pose of one prepared image; `valid` (float, work size) leaves out where it is 0 (a defect)."""
        part, _blob, cx, cy, axis, _elongation = data

        def fit(a: float, f: bool) -> float:
            if valid is None:
                return _ncc(self.template, self._canonical(part, cx, cy, a, f))
            keep = self._canonical(valid, cx, cy, a, f)
            return _ncc(self.template * keep, self._canonical(part, cx, cy, a, f) * keep)

        # every 10 degrees: a blob's axis is a poor guide when the blob takes in background (a board's stripes)
        fits = [(fit(a, f), a, f) for a in axis + np.arange(0, 360, 10.0) for f in (False, True)]
        plain = max((t for t in fits if not t[2]), key=lambda t: t[0])
        mirrored = max((t for t in fits if t[2]), key=lambda t: t[0])
        _score, angle, flip = mirrored if mirrored[0] > plain[0] + FLIP_MARGIN else plain
        best = self._refine(part, cx, cy, angle, flip, valid)
        # a (nearly) symmetric part or a busy background can make a turned fit about as good as the
        # template's own orientation; then the part is taken to lie as the template does
        if fit(self.usual_angle, False) < plain[0] - 0.2:
            return best  # clearly turned: not worth refining the usual orientation
        usual = self._refine(part, cx, cy, self.usual_angle, False, valid)
        return usual if usual.score >= best.score - FLIP_MARGIN else best

    def _refine(self, part, cx, cy, angle, flip, valid: np.ndarray | None = None) -> Pose:
        """The pose near (angle, flip) that best fits the template (cv2.findTransformECC, Euclidean)."""
        moving = self._canonical(part, cx, cy, angle, flip)
        keep = None if valid is None else (self._canonical(valid, cx, cy, angle, flip) > 0.5).astype(np.uint8)
        warp = np.eye(2, 3, dtype=np.float32)
        try:
            score, warp = cv2.findTransformECC(self.template.astype(np.float32), moving.astype(np.float32), warp,
                                               cv2.MOTION_EUCLIDEAN,
                                               (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-4), keep, 5)
        except cv2.error:  # did not converge: keep the coarse pose
            score, warp = _ncc(self.template, moving), np.eye(2, 3, dtype=np.float32)
        # moving(warp(u)) ~ template(u): compose the warp (patch pixels) into the pose
        half = self.patch // 2
        shift = np.array([[1, 0, -half], [0, 1, -half], [0, 0, 1.0]])
        w = np.vstack([warp, [0, 0, 1]]).astype(np.float64)
        m = Pose(cx, cy, angle, flip).matrix() @ shift @ w @ np.linalg.inv(shift)
        r = m[:2, :2] @ (np.diag([1.0, -1.0]) if flip else np.eye(2))
        new_angle = float(np.rad2deg(np.arctan2(r[0, 1], r[0, 0])))
        return Pose(float(m[0, 2]), float(m[1, 2]), new_angle % 360, flip, True, float(score))

    def pose(self, path: str, image: np.ndarray, ignore: np.ndarray | None = None) -> Pose:
        """The part's pose in `image` (its own pixels), cached by `path`; found=False for a texture or when
        no part is seen. `ignore` (bool, image size): a defect's region, left out of the registration so
        that a bent or missing piece does not pull the pose."""
        if path not in self._cache:
            self._cache[path] = self.measure(image, ignore)
        return self._cache[path]

    def measure(self, image: np.ndarray, ignore: np.ndarray | None = None) -> Pose:
        h, w = image.shape[:2]
        if self.kind == "texture":
            return Pose(w / 2, h / 2, 0.0, False, found=False)
        small, f = _small(image)
        data = self._prepare(small)
        if data is None:
            return Pose(w / 2, h / 2, 0.0, False, found=False)
        valid = None
        if ignore is not None and ignore.any():
            defect = cv2.resize(ignore.astype(np.float32), small.shape[1::-1], interpolation=cv2.INTER_AREA) > 0
            valid = 1.0 - cv2.dilate(defect.astype(np.uint8), _disk(min(small.shape[:2]) / 64)).astype(np.float32)
        p = self._register(data, valid)
        # work pixels -> image pixels (pixel centres line up at (i + 0.5) / f - 0.5)
        sx, sy = w / small.shape[1], h / small.shape[0]
        return Pose((p.cx + 0.5) * sx - 0.5, (p.cy + 0.5) * sy - 0.5, p.angle, p.flip, True, p.score)

    def transfer(self, src_path: str, src: np.ndarray, dst_path: str, dst: np.ndarray,
                 ignore: np.ndarray | None = None) -> np.ndarray | None:
        """2x3 affine from `src` pixels to the same place on the part in `dst`; None when either has no part.
        `ignore`: the source's defect region (see pose())."""
        a, b = self.pose(src_path, src, ignore), self.pose(dst_path, dst)
        if not (a.found and b.found):
            return None
        return transfer_matrix(a, b)

    def on_part(self, mask: np.ndarray, *images: np.ndarray, margin: float = 0.02) -> float:
        """Share of `mask` on the part as it is in any of `images` (grown by `margin` of the image side,
        since masks are drawn a little generously); 1.0 for a texture. For a synthetic defect, pass the
        good image it was made on and the synthetic image: a missing piece was on the first, a bent one
        is on the second."""
        part = np.zeros(mask.shape, np.uint8)
        for image in images:
            part |= self.foreground(image).astype(np.uint8)
        part = cv2.dilate(part, _disk(margin * min(mask.shape))) > 0
        return float((mask & part).sum() / max(1, mask.sum()))

    def foreground(self, image: np.ndarray) -> np.ndarray:
        """Where the part is in `image` (bool, image size); everything for a texture."""
        h, w = image.shape[:2]
        if self.kind == "texture":
            return np.ones((h, w), bool)
        blob = foreground_small(_small(image)[0])
        return cv2.resize(blob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))


AUGMENTS = ("auto", "fixed", "rotating")


def training_augmentation(good_paths: list[str], choice: str = "auto",
                          poses: PartPoses | None = None) -> tuple[str, dict]:
    """(a line saying what was chosen, TrainConfig overrides) for the classifier's augmentation: any angle
    (and mirror images where the part allows them) for a rotating part, a small affine otherwise, mirrored
    left-right too for a fixed part that is mirror-symmetric about the image's centre (part.py's mirror_symmetry:
    ratio at most MIRROR_RATIO, axis offset within MIRROR_CENTRE):
    each real defect then also teaches its mirror image. On real transistor (balanced arm, 5 random splits x
    2 seeds, paired) it cut false alarms 0.087 -> 0.050 and lifted pixel AP 0.749 -> 0.797, both beyond
    noise; balanced accuracy did not move (+0.004 [-0.045, +0.056]; README).
    `choice` auto measures the category's kind from `good_paths` (or takes `poses`, measured from them);
    fixed or rotating overrides it."""
    from defectsynth.errors import DefectsynthError

    if choice not in AUGMENTS:
        raise DefectsynthError(f"--augment {choice!r} is unknown; use one of: {', '.join(AUGMENTS)}")
    if choice == "fixed":
        return "augmentation: small affine (--augment fixed)", {}
    if choice == "rotating":
        return "augmentation: any angle (--augment rotating)", {"degrees": 180.0}
    poses = poses or PartPoses.from_paths(good_paths)
    if poses.kind == "fixed":
        ratio, offset = PartModel.from_paths(good_paths).mirror_symmetry
        # the augmentation mirrors about the image's centre: the part must sit on it, or it would land
        # twice its offset away, where a good part never is
        if ratio <= MIRROR_RATIO and abs(offset) <= MIRROR_CENTRE:
            return (f"{poses.describe()}; mirror-symmetric (its mirror image differs {ratio:.2f}x as much "
                    "as good parts do); augmentation: small affine, mirrored", {"hflip": True})
    if poses.kind != "rotating":
        return f"{poses.describe()}; augmentation: small affine", {}
    flips = {"hflip": True} if poses.flips else {}
    return f"{poses.describe()}; augmentation: any angle" + (", mirrored" if flips else ""), {"degrees": 180.0, **flips}
