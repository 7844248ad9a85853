"""Mask-guided cut-paste: a train-split real defect, cut out through its change region, moved onto a
good training image.

A mask marks the defect, not everything that changed: MVTec's bent_lead mask covers where the bent
lead is now, not where the straight one was. So by default (`region: change`) the region cut from the
source is its annotated mask united with where it differs from the closest registered good images
(synth/change.py), and, once placed, also where the good image under it shows structure the source does
not have near the defect (the good part's own straight lead, say), so that structure does not survive
beside the pasted defect. `region: mask` is the mask alone, the earlier behaviour. Where registration is
unreliable (a texture, a part that moves from image to image) the change region falls back to the mask.
The output mask is the annotated defect (`mask_out: annotated`, MVTec's convention, which the held-out
masks follow) or everything pasted (`mask_out: change`, generator `cutpaste-pasted-mask`).

Placement `aligned` puts the region where it was on the part (the part's shift between the two images
is measured): right for fixtured products such as the transistor. There, with a change region, the
paste is **registered** (`paste: registered`, the default): the patch is neither rotated nor scaled nor
re-lit, it is snapped (within REGISTERED_SNAP of the side) to where its surroundings best match the good
image (with `repeat`, generator `cutpaste-repeat`, first moved by a whole board period onto a
neighbouring lead where the part's leads repeat with the board: PartModel.repeat_steps; with `bend`,
generator `cutpaste-bend`, the defect's metal first turned about where it leaves the part's body), the good
part's structure that differs from the source near the defect is covered by the source's own pixels
(its board, holes lined up), and it is alpha-blended, so that a cut lead shows clean board where the
lead was, as a real one does. `paste: augmented` (`cutpaste-augmented`) is the earlier
paste: ONE albumentations Compose (small rotation and scale, optional flips, elastic,
brightness/contrast) over image and masks, the full jitter, Poisson blending, the good part's structure
rebuilt from its own board. On real transistor the augmented paste left pale smears and doubled holes
where a lead had been (Poisson drags the good lead's brightness into the pasted board; a rotated patch's
holes land beside the good image's), so a model could learn the paste instead of the defect; the
registered paste is measured against it in the README ("Registered pastes"). Every other placement
(and a part that cannot be registered) is augmented. `snap` > 0 (`cutpaste-snap`: the augmented paste
snapped) applies the snap to augmented aligned pastes too.

`pose` first carries the source image, its masks and its change region from the source part's frame
into the target part's frame (synth/partpose.py: position, angle, flip), so a defect on a screw's head
lands on the head however the two screws lie. `object` puts it anywhere on the part, `anywhere`
anywhere in the image. `auto` (the default) measures the category from its good images: a fixed part
gets `aligned`, a part at any angle `pose`, a texture (no part) `anywhere`. Blending of augmented
pastes is Poisson (cv2.seamlessClone) or a feathered alpha; recipes/transistor-generators.yaml measures
the two downstream.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import albumentations as A
import cv2
import numpy as np

from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import mask_problem, read_image, read_mask
from defectsynth.synth.base import Generator, Sample
from defectsynth.synth.change import THRESHOLD, Change, ChangeFinder
from defectsynth.synth.part import WORK_SIDE, PartModel, _dist, _gray, _lab
from defectsynth.synth.partpose import PartPoses
from defectsynth.synth.registry import register_generator

PLACEMENTS = ("auto", "aligned", "pose", "object", "anywhere")
AUTO_PLACEMENT = {"fixed": "aligned", "rotating": "pose", "texture": "anywhere"}  # by the category's kind
BLENDS = ("poisson", "alpha")
REGIONS = ("change", "mask")
MASKS_OUT = ("annotated", "change")
PASTES = ("registered", "augmented")
REACH = 0.06  # how far (share of the image side) from the defect the good image may be overwritten
REGISTERED_SNAP = 0.04  # a registered paste is snapped this far (share of the side) to where its surroundings match
REPEAT_KEEP = 0.9  # a repeat step must keep this share of the region's overlap with the part's thin structures
REPEAT_BODY = 0.4  # a region with more than this share on the part's body is not a thin structure's defect


@lru_cache(maxsize=64)
def _defect(path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
    # a class has a handful of train defects; decoding each once per process keeps sampling near I/O speed
    return read_image(path), read_mask(mask_path)


def _disk(radius: int) -> np.ndarray:
    radius = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _as_channels(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    if image.ndim == like.ndim:
        return image
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if like.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def poisson_blend(target: np.ndarray, patch: np.ndarray, region: np.ndarray, top: int, left: int) -> np.ndarray:
    """seamlessClone of `patch` (where `region`) into `target` with its top-left corner at (top, left)."""
    ys, xs = np.nonzero(region)
    h, w = target.shape[:2]
    # seamlessClone places the centre of the region's bounding box; it must stay 1 px inside the image
    y0, y1, x0, x1 = ys.min() + top, ys.max() + top, xs.min() + left, xs.max() + left
    if y0 < 1 or x0 < 1 or y1 > h - 2 or x1 > w - 2:
        return alpha_blend(target, patch, region, top, left, feather=1)
    gray = target.ndim == 2
    dst = cv2.cvtColor(target, cv2.COLOR_GRAY2BGR) if gray else target
    src = cv2.cvtColor(patch, cv2.COLOR_GRAY2BGR) if gray else patch
    full_src = np.zeros_like(dst)
    full_mask = np.zeros((h, w), np.uint8)
    ph, pw = region.shape
    full_src[top:top + ph, left:left + pw] = src
    full_mask[top:top + ph, left:left + pw] = region.astype(np.uint8) * 255
    center = ((x0 + x1 + 1) // 2, (y0 + y1 + 1) // 2)
    out = cv2.seamlessClone(full_src, dst, full_mask, center, cv2.NORMAL_CLONE)
    return cv2.cvtColor(out, cv2.COLOR_BGR2GRAY) if gray else out


def alpha_blend(target: np.ndarray, patch: np.ndarray, region: np.ndarray, top: int, left: int,
                feather: float) -> np.ndarray:
    """Paste `patch` where `region`, with edges softened over about `feather` px."""
    alpha = region.astype(np.float32)
    if feather > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather) * region  # soft inside, nothing outside the region
    ph, pw = region.shape
    out = target.copy()
    win = out[top:top + ph, left:left + pw].astype(np.float32)
    a = alpha[:, :, None] if target.ndim == 3 else alpha
    out[top:top + ph, left:left + pw] = np.clip(a * patch + (1 - a) * win + 0.5, 0, 255).astype(np.uint8)
    return out


def _overwritten(window: np.ndarray, patch: np.ndarray, region: np.ndarray, side: int) -> np.ndarray:
    """Where, near the pasted region, the good image under the patch shows what the source does not (each
    a pixel or two either way): the good part's own structure that the defect moved or removed. Compared
    at the part model's working resolution."""
    h, w = region.shape
    f = min(1.0, WORK_SIDE / side)
    size = (max(4, round(w * f)), max(4, round(h * f)))
    slack = max(1, round(side * f / 128))  # 2 px at the working resolution of a large image
    a = _lab(cv2.resize(_as_channels(patch, window), size, interpolation=cv2.INTER_AREA))
    b = _lab(cv2.resize(window, size, interpolation=cv2.INTER_AREA))
    small = cv2.resize(region.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    diff = np.full(small.shape, np.inf, np.float32)
    for dy in range(-slack, slack + 1):
        for dx in range(-slack, slack + 1):
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            diff = np.minimum(diff, _dist(a, cv2.warpAffine(b, m, size, borderMode=cv2.BORDER_REPLICATE)))
    changed = cv2.morphologyEx((diff > THRESHOLD).astype(np.uint8), cv2.MORPH_OPEN, _disk(1))
    _, labels = cv2.connectedComponents(changed)
    touch = cv2.dilate(small, _disk(2 * slack)) > 0
    hit = np.unique(labels[touch & (changed > 0)])
    near = cv2.dilate(small, _disk(REACH * side * f)) > 0
    found = (np.isin(labels, hit[hit > 0]) & near).astype(np.uint8)
    return cv2.resize(found, (w, h), interpolation=cv2.INTER_NEAREST) > 0


def snap(target: np.ndarray, patch: np.ndarray, context: np.ndarray, top: int, left: int,
         radius: int) -> tuple[int, int]:
    """The top-left corner within `radius` px of (top, left) where the patch's `context` (its pixels around
    the pasted region) best matches `target` (least squared difference): the defect then joins the good
    part's own leads and holes instead of landing a few pixels beside them, a seam the source never had."""
    h, w = target.shape[:2]
    ph, pw = context.shape
    t0, l0 = max(0, top - radius), max(0, left - radius)
    window = target[t0:min(h, top + ph + radius), l0:min(w, left + pw + radius)]
    if radius < 1 or window.shape[0] < ph or window.shape[1] < pw or context.sum() < 16:
        return top, left
    cost = cv2.matchTemplate(_gray(window).astype(np.float32), _gray(patch).astype(np.float32), cv2.TM_SQDIFF,
                             mask=context.astype(np.float32)).astype(np.float64)
    # where the surroundings say nothing (flat board, or along a lead) many places cost the same: the
    # offered place wins those ties, not the search window's first corner (a tiny pull towards it)
    yy, xx = np.mgrid[:cost.shape[0], :cost.shape[1]]
    cost += 1e-6 * (float(cost.max()) + 1.0) * ((yy - (top - t0)) ** 2 + (xx - (left - l0)) ** 2)
    y, x = np.unravel_index(np.argmin(cost), cost.shape)
    return t0 + int(y), l0 + int(x)


@register_generator("cutpaste")
class CutPaste(Generator):
    def __init__(self, placement: str = "auto", blend: str = "poisson", hflip: float = 0.0, vflip: float = 0.0,
                 rotate: float = 8.0, scale: float = 0.1, elastic: float = 0.3, brightness: float = 0.1,
                 jitter: float = 0.02, snap: float = 0.0, dilate: float = 1 / 100, feather: float = 1 / 200,
                 region: str = "change", mask_out: str = "annotated", paste: str = "registered",
                 repeat: bool = False, bend: float = 0.0, **_ignored):
        if paste not in PASTES:
            raise DefectsynthError(f"cutpaste paste {paste!r} is unknown; use one of: {', '.join(PASTES)}")
        if region not in REGIONS:
            raise DefectsynthError(f"cutpaste region {region!r} is unknown; use one of: {', '.join(REGIONS)}")
        if mask_out not in MASKS_OUT:
            raise DefectsynthError(f"cutpaste mask_out {mask_out!r} is unknown; use one of: {', '.join(MASKS_OUT)}")
        if placement not in PLACEMENTS:
            raise DefectsynthError(f"cutpaste placement {placement!r} is unknown; use one of: {', '.join(PLACEMENTS)}")
        if blend not in BLENDS:
            raise DefectsynthError(f"cutpaste blend {blend!r} is unknown; use one of: {', '.join(BLENDS)}")
        # flips default to off: a transistor's leads point down and its case is not mirror-symmetric
        self.config = dict(placement=placement, blend=blend, hflip=hflip, vflip=vflip, rotate=rotate, scale=scale,
                           elastic=elastic, brightness=brightness, jitter=jitter, snap=snap, dilate=dilate,
                           feather=feather, region=region, mask_out=mask_out, paste=paste,
                           repeat=repeat, bend=bend)
        self.goods: list[str] = []
        self.defects: dict[str, list[tuple[str, str]]] = {}
        self.part: PartModel | None = None
        self.poses: PartPoses | None = None  # measured when the placement is auto or pose
        self.placement = placement  # auto resolved by fit()
        self._transforms: dict[tuple[int, int], A.Compose] = {}  # per crop size; built on first use
        self._offsets: dict[str, tuple[int, int]] = {}  # the part's shift in each image, by path
        self._finder: ChangeFinder | None = None  # built by fit() when it learns the change regions
        self._changes: dict[tuple[str, tuple[int, ...]], Change] = {}  # by (source path, shape)
        self._plain: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}  # where a source shows plain background

    def fit(self, rows: list[Row]) -> None:
        self.goods = [r.path for r in rows if r.label == GOOD]
        self.defects = {}
        for r in rows:
            if r.label != GOOD and r.mask:
                self.defects.setdefault(r.label, []).append((r.path, r.mask))
        if not self.goods:
            raise DefectsynthError("cutpaste needs good training images (train/good is empty)")
        self.part = PartModel.from_paths(self.goods)
        placement = self.config["placement"]
        self.poses = PartPoses.from_paths(self.goods) if placement in ("auto", "pose") else None
        self.placement = AUTO_PLACEMENT[self.poses.kind] if placement == "auto" else placement
        if self.config["region"] == "change":  # learnt from the train defects once, not on first use
            for path, mask_path in (pair for pairs in self.defects.values() for pair in pairs):
                image, mask = _defect(path, mask_path)
                if mask_problem(mask, image.shape) is None:  # generate refuses the others, for their class
                    self._change(path, image, mask)

    def _augment(self, crop: np.ndarray, masks: list[np.ndarray], seed: int):
        transform = self._transforms.get(crop.shape[:2])
        if transform is None:
            c = self.config
            s = max(crop.shape[:2]) / 100  # elastic displacement of about 2.5 px per 100 px of crop
            transform = A.Compose([
                A.Affine(rotate=(-c["rotate"], c["rotate"]), scale=(1 - c["scale"], 1 + c["scale"]),
                         border_mode=cv2.BORDER_REFLECT_101, p=1.0),
                A.HorizontalFlip(p=c["hflip"]),
                A.VerticalFlip(p=c["vflip"]),
                A.ElasticTransform(alpha=300 * s * s, sigma=8 * s, p=c["elastic"]),
                A.RandomBrightnessContrast(brightness_limit=c["brightness"], contrast_limit=c["brightness"], p=0.5),
            ])
            self._transforms[crop.shape[:2]] = transform
        transform.set_random_seed(seed)  # re-seeded per image: the same image whatever ran before it
        out = transform(image=crop, masks=[m.astype(np.uint8) for m in masks])
        return out["image"], [m > 0 for m in out["masks"]]

    def _change(self, path: str, image: np.ndarray, mask: np.ndarray) -> Change:
        key = (path, image.shape)
        if key not in self._changes:
            if self._finder is None:
                self._finder = ChangeFinder(self.goods, self.part)
            self._changes[key] = self._finder.find(image, mask)
        return self._changes[key]

    def _plain_background(self, path: str, image: np.ndarray) -> np.ndarray:
        key = (path, image.shape)
        if key not in self._plain:  # kept as bits: one map per good image is 1/8 of its pixel count
            self._plain[key] = np.packbits(self.part.background_like(image))
        return np.unpackbits(self._plain[key], count=image.shape[0] * image.shape[1]).reshape(image.shape[:2]) > 0

    def source_regions(self, label: str) -> dict[str, np.ndarray]:
        if self.config["region"] != "change":
            return {}
        return {path: self._change(path, *_defect(path, mask_path)).region
                for path, mask_path in self.defects.get(label, [])}

    def notes(self, label: str) -> list[str]:
        lines = []
        if self.poses is not None:
            lines.append(f"cutpaste {label}: {self.poses.describe()}; placement {self.placement}"
                         + (" (auto)" if self.config["placement"] == "auto" else ""))
        return lines + self._change_notes(label)

    def _change_notes(self, label: str) -> list[str]:
        if self.config["region"] != "change":
            return []
        unreliable = [path for path, mask_path in self.defects.get(label, [])
                      if not self._change(path, *_defect(path, mask_path)).reliable]
        if not unreliable:
            return []
        return [f"cutpaste {label}: {len(unreliable)} of {len(self.defects[label])} source defects could not be "
                "registered to a good image (a texture, or a part not at the same place and angle), so only "
                "their masks are pasted"]

    def _offset(self, path: str, image: np.ndarray) -> tuple[int, int]:
        if path not in self._offsets:
            self._offsets[path] = self.part.offset(image)
        return self._offsets[path]

    def sample(self, label: str, n: int, rng: np.random.Generator) -> Iterator[Sample]:
        if label not in self.defects:
            raise DefectsynthError(f"cutpaste: no train-split {label} defects with masks to cut from")
        c = self.config
        for _ in range(n):
            src_path, src_mask_path = self.defects[label][rng.integers(len(self.defects[label]))]
            good_path = self.goods[rng.integers(len(self.goods))]
            source, mask = _defect(src_path, src_mask_path)
            good = read_image(good_path)
            source = _as_channels(source, good)
            if source.shape[:2] != good.shape[:2]:
                scale = (good.shape[1] / source.shape[1], good.shape[0] / source.shape[0])
                source = cv2.resize(source, good.shape[1::-1], interpolation=cv2.INTER_AREA)
                mask = cv2.resize(mask.astype(np.uint8), good.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
            else:
                scale = (1.0, 1.0)
            h, w = good.shape[:2]
            side = min(h, w)
            grow = max(1, round(c["dilate"] * side))
            change = self._change(src_path, source, mask) if c["region"] == "change" else None
            reliable = change is not None and change.reliable
            cut = change.region if change is not None else mask
            region = cv2.dilate(cut.astype(np.uint8), _disk(grow)) > 0
            # the crop leaves room around the region, so rotation and scale do not cut it off, and, for
            # change regions, so the good part's own structure next to the defect can be overwritten
            plain = self._plain_background(src_path, source) if reliable else np.zeros_like(mask)
            placement = self.placement
            if placement == "pose":
                to_good = self.poses.transfer(src_path, source, good_path, good, ignore=region)
                moved = None if to_good is None else [
                    cv2.warpAffine(m.astype(np.uint8), to_good, (w, h), flags=cv2.INTER_NEAREST) > 0
                    for m in (mask, region, plain)]
                if moved is not None and moved[0].any():
                    # into the good image's part frame: image, masks and change region turn and move together
                    source = cv2.warpAffine(source, to_good, (w, h), flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REFLECT_101)
                    mask, region, plain = moved
                else:  # no part seen in one of the two, or the defect would leave the picture
                    placement = "object"
            # a registered paste keeps the source's part and board lined up with the good image's: rotating,
            # scaling, warping or re-lighting the patch would put its holes and leads beside theirs
            registered = reliable and placement == "aligned" and c["paste"] == "registered"
            ys, xs = np.nonzero(region)
            pad = max(2, int(0.2 * max(np.ptp(ys), np.ptp(xs))))
            if reliable:
                pad = max(pad, round(REACH * side))
            y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + 1 + pad)
            x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + 1 + pad)
            crop = (slice(y0, y1), slice(x0, x1))
            untouched = source[crop], region[crop], mask[crop], plain[crop]
            turned_by = None  # degrees, when a registered bend was turned
            seed = int(rng.integers(2**31))  # drawn either way: a registered paste takes the same later draws
            if registered:
                patch, region_t, mask_t, plain_t = untouched
                if c["bend"] > 0:
                    patch, region_t, mask_t, turned_by = self._bend(source, plain, crop, mask_t, region_t, rng)
            else:
                patch, (region_t, mask_t, plain_t) = self._augment(untouched[0], list(untouched[1:]), seed)
            if not mask_t.any():  # augmentation pushed the defect out of its crop: keep it untransformed
                patch, region_t, mask_t, plain_t = untouched
            ph, pw = region_t.shape
            top, left = self._place(placement, (src_path, source), (good_path, good), (y0, x0), (ph, pw), rng,
                                    registered)
            step = (0, 0)
            if registered and c["repeat"]:
                step = self._repeat(good, region_t, top, left, rng)
                top, left = top + step[0], left + step[1]
            radius = max(c["snap"], REGISTERED_SNAP if registered else 0.0)
            if placement == "aligned" and radius > 0:
                context = ~(cv2.dilate(region_t.astype(np.uint8), _disk(2 * grow)) > 0)
                top, left = snap(good, patch, context, top, left, round(radius * side))
            base, pasted = good, region_t
            blend = c["blend"]
            if registered:
                # where the good part's own structure next to the defect differs from the source (its straight
                # lead where the source's was bent away or cut), the source's pixels, lined up, go over it too;
                # alpha, not Poisson: Poisson would carry the good lead's brightness into the pasted board
                window = (slice(top, top + ph), slice(left, left + pw))
                clear = _overwritten(good[window], patch, region_t, side)
                pasted = region_t = region_t | (cv2.dilate(clear.astype(np.uint8), _disk(side / 128)) > 0)
                blend = "alpha"
            elif reliable:
                # the good part's own structure next to the defect, where the source shows bare background
                # (its straight lead, where the source's lead was bent away), is rebuilt as background;
                # where both show background (holes a little apart, say) nothing needs rebuilding
                window = (slice(top, top + ph), slice(left, left + pw))
                bare = self._plain_background(good_path, good)[window]
                clear = _overwritten(good[window], patch, region_t, side) & plain_t & ~bare
                if clear.any():
                    full = np.zeros((h, w), np.uint8)
                    full[top:top + ph, left:left + pw] = clear
                    # copied from the good image's own bare background, never from its part
                    base = self.part.fill(good, cv2.dilate(full, _disk(side / 128)) > 0,
                                          free=self._plain_background(good_path, good))
                    pasted = region_t | clear
            if blend == "poisson":
                image = poisson_blend(base, patch, region_t, top, left)
            else:
                image = alpha_blend(base, patch, region_t, top, left, feather=c["feather"] * side)
            out_mask = np.zeros((h, w), bool)
            out_mask[top:top + ph, left:left + pw] = pasted if c["mask_out"] == "change" else mask_t
            parents = [src_path, good_path] + ([change.reference] if change is not None else [])
            extra = {"region_used": "change" if reliable else "mask",
                     "reference": change.reference} if change is not None else {}
            yield Sample(image=image, mask=out_mask, label=label, parents=parents,
                         params={**c, "source": src_path, "good": good_path, "top": int(top), "left": int(left),
                                 "source_scale": list(scale), "placement_used": placement,
                                 "paste_used": "registered" if registered else "augmented", "blend_used": blend,
                                 **({"repeat_step": list(step)} if c["repeat"] else {}),
                                 **({"bend_deg": round(turned_by, 2)} if turned_by is not None else {}),
                                 **(self.poses.params() if self.poses is not None else {}), **extra})

    def _bend(self, source: np.ndarray, plain: np.ndarray, crop: tuple[slice, slice], mask: np.ndarray,
              region: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """The source's defect turned by up to `bend` degrees about its point nearest the part's body (where a
        bent lead leaves the case), its old place rebuilt as background: more kinds of bend than the few real
        ones, still lined up with the board. Crop-sized patch, region and mask, and the angle (degrees,
        counter-clockwise); unchanged without a body."""
        body = self.part.body(source)[crop]
        if not body.any() or not mask.any():
            return source[crop], region, mask, 0.0
        side = min(source.shape[:2])
        distance = cv2.distanceTransform((~body).astype(np.uint8), cv2.DIST_L2, 5)
        ys, xs = np.nonzero(mask)
        k = int(np.argmin(distance[ys, xs]))
        angle = float(rng.uniform(-1, 1) * self.config["bend"])
        turn = cv2.getRotationMatrix2D((float(xs[k]), float(ys[k])), angle, 1.0)
        ph, pw = mask.shape
        # the metal of the defect, not the board and holes its mask also covers: those stay lined up
        metal = mask & ~plain[crop]
        lead = cv2.dilate((metal if metal.any() else mask).astype(np.uint8), _disk(side / 256))
        turned = cv2.warpAffine(lead, turn, (pw, ph), flags=cv2.INTER_NEAREST) > 0
        vacated = np.zeros(source.shape[:2], bool)
        vacated[crop] = (cv2.dilate(lead, _disk(side / 128)) > 0) & ~turned
        patch = self.part.fill(source, vacated, free=plain)[crop]
        patch[turned] = cv2.warpAffine(source[crop], turn, (pw, ph), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT_101)[turned]
        new_mask = cv2.warpAffine(mask.astype(np.uint8), turn, (pw, ph), flags=cv2.INTER_NEAREST) > 0
        return patch, region | turned | vacated[crop], new_mask, angle

    def _repeat(self, good: np.ndarray, region: np.ndarray, top: int, left: int,
                rng: np.random.Generator) -> tuple[int, int]:
        """A whole-period step (one of the part's repeat_steps, or none) that moves a registered patch from
        its lead onto a neighbouring one, drawn uniformly among the steps that keep the pasted region on
        the part's thin structures (their usual zone grown by half a period) at least REPEAT_KEEP as much
        as where it came from: a bent outer lead may become a bent middle lead, never a lead on bare board.
        Only a defect of the thin structures moves (at most REPEAT_BODY of its region on the part's body):
        damage to a case moved a lead's pitch over would hang off the case. A step moves board, holes and
        lead together, so the paste stays registered."""
        steps = self.part.repeat_steps
        if not steps:
            return 0, 0
        h, w = good.shape[:2]
        ph, pw = region.shape
        area = max(1, int(region.sum()))
        if (self.part.body(good)[top:top + ph, left:left + pw] & region).sum() > REPEAT_BODY * area:
            return 0, 0
        zone = cv2.dilate(self.part.lead_zone_at(good).astype(np.uint8), _disk(max(self.part.periods) / 2)) > 0

        def on_zone(t: int, x: int) -> float:
            if t < 0 or x < 0 or t + ph > h or x + pw > w:
                return -1.0
            return float((zone[t:t + ph, x:x + pw] & region).sum()) / area

        here = on_zone(top, left)
        options = [(0, 0)] + [(dy, dx) for dy, dx in steps if on_zone(top + dy, left + dx) >= REPEAT_KEEP * here]
        return options[rng.integers(len(options))]

    def _place(self, placement: str, source: tuple[str, np.ndarray], good: tuple[str, np.ndarray],
               at: tuple[int, int], size: tuple[int, int], rng: np.random.Generator,
               registered: bool = False) -> tuple[int, int]:
        """Top-left corner for a (ph, pw) patch that came from `at` in `source`, kept inside the image."""
        good_path, good = good
        h, w = good.shape[:2]
        ph, pw = size
        if placement in ("aligned", "pose"):
            # pose: the source was already carried into the good image's part frame
            sy, sx = self._offset(*source) if placement == "aligned" else (0, 0)
            gy, gx = self._offset(good_path, good) if placement == "aligned" else (0, 0)
            # pose registration is accurate to well under 1% of the side: a smaller jitter keeps a thread
            # defect on the thread; a registered paste is snapped afterwards; otherwise aligned placement's
            # jitter also covers its offset's error
            jitter = self.config["jitter"] * min(h, w) * (0.25 if placement == "pose" or registered else 1.0)
            top = at[0] + gy - sy + rng.normal(0, jitter)
            left = at[1] + gx - sx + rng.normal(0, jitter)
        elif placement == "object":
            ys, xs = np.nonzero(self.part.region(good))
            k = rng.integers(len(ys))
            top, left = ys[k] - ph / 2, xs[k] - pw / 2
        else:
            top, left = rng.uniform(0, max(1, h - ph)), rng.uniform(0, max(1, w - pw))
        return int(np.clip(round(top), 0, max(0, h - ph))), int(np.clip(round(left), 0, max(0, w - pw)))


@register_generator("cutpaste-repeat")
class CutPasteRepeat(CutPaste):
    """cutpaste whose registered pastes may also land one background period over, on a neighbouring repeat of
    the part's thin structures (a bent outer lead pasted onto the middle lead): more places for the few
    real defects, with board and holes still lined up (README, registered pastes)."""

    def __init__(self, repeat: bool = True, **kwargs):
        super().__init__(repeat=repeat, **kwargs)


@register_generator("cutpaste-bend")
class CutPasteBend(CutPaste):
    """cutpaste whose registered pastes turn the defect by up to `bend` degrees about where it leaves the part's
    body (a bent lead bent further, or less, or the other way): more kinds of bend than the real shots. On real
    transistor it taught bent_lead no better than the shots as they are (README, "Tried for bent_lead")."""

    def __init__(self, bend: float = 35.0, **kwargs):
        super().__init__(bend=bend, **kwargs)


@register_generator("cutpaste-alpha")
class CutPasteAlpha(CutPaste):
    """cutpaste with a feathered alpha blend instead of Poisson, so that train-eval can measure which
    blend helps more (recipes/transistor-generators.yaml)."""

    def __init__(self, blend: str = "alpha", **kwargs):
        super().__init__(blend=blend, **kwargs)


@register_generator("cutpaste-mask")
class CutPasteMask(CutPaste):
    """cutpaste through the annotated mask alone (the behaviour before change regions), so that train-eval
    can measure what the change region adds (recipes/transistor-change.yaml)."""

    def __init__(self, region: str = "mask", **kwargs):
        super().__init__(region=region, **kwargs)


@register_generator("cutpaste-augmented")
class CutPasteAugmented(CutPaste):
    """cutpaste as it was before registered pastes: every patch rotated, scaled, warped and re-lit, placed with
    the full jitter, Poisson-blended, the good part's structure beside it rebuilt from its board; so that
    train-eval can measure what registering adds (README, registered pastes)."""

    def __init__(self, paste: str = "augmented", **kwargs):
        super().__init__(paste=paste, **kwargs)


@register_generator("cutpaste-snap")
class CutPasteSnap(CutPaste):
    """the augmented paste (`cutpaste-augmented`) whose aligned patches snap to where their surroundings match
    the good image (see `snap`): the snap measured before registered pastes (README, change regions)."""

    def __init__(self, snap: float = 0.04, paste: str = "augmented", **kwargs):
        super().__init__(snap=snap, paste=paste, **kwargs)


@register_generator("cutpaste-pasted-mask")
class CutPastePastedMask(CutPaste):
    """cutpaste whose synthetic mask is everything pasted (the change region and what it covered on the good
    part), not the annotated defect: the other output mask the change region allows (README, change regions)."""

    def __init__(self, mask_out: str = "change", **kwargs):
        super().__init__(mask_out=mask_out, **kwargs)


@register_generator("cutpaste-aligned")
class CutPasteAligned(CutPaste):
    """cutpaste that keeps each defect at its place in image coordinates (moved with the part's shift) whatever
    the category's measured kind: the override of `auto` for a part it wrongly takes to rotate."""

    def __init__(self, placement: str = "aligned", **kwargs):
        super().__init__(placement=placement, **kwargs)


@register_generator("cutpaste-pose")
class CutPastePose(CutPaste):
    """cutpaste that carries each defect into the target part's frame (position, angle, flip) whatever the
    category's measured kind."""

    def __init__(self, placement: str = "pose", **kwargs):
        super().__init__(placement=placement, **kwargs)


@register_generator("cutpaste-anywhere")
class CutPasteAnywhere(CutPaste):
    """cutpaste that puts each defect anywhere in the picture (a texture) whatever the category's measured
    kind."""

    def __init__(self, placement: str = "anywhere", **kwargs):
        super().__init__(placement=placement, **kwargs)
