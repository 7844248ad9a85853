"""Procedural lead defects on a good part: one lead bent (`lead-bend`) or cut (`lead-cut`) at a point on it.

The real bends and cuts are few (three of each per split) and each split's three miss whole kinds: a lead
pushed sideways off its hole, a hook, a cut high or low. Cut-paste can only move the real ones, or turn
them a little (`cutpaste-bend`). These generators make the defect from a good image alone: they find the
part's leads (synth/leads.py), pick one and a point along it (a share of its length from the body), and
rebuild the lead's piece beyond that point, its hole included, as bare board, so that nothing of the
straight lead stays (a stub left in the hole would be a cut lead's sign on a bent one). A bend then draws
the piece turned about that point by an angle of its own; a cut leaves it gone. The rebuilt board is
brought to the brightness of the board around it: it comes from whole board periods away, often from the
brighter edge of the picture. Masks follow MVTec's: a bent lead's is the turned piece, where the lead is
now; a cut lead's is where the piece was, down to its hole.

Both are made the same way on purpose: on real transistor, bends alone (beside cut-paste cuts) taught the
model that a lead not ending in its hole is bent, and cut leads were called bent (README, "Procedural lead
defects"). For fixtured parts with leads on a repeating board (a transistor); a category where the leads
are not found one by one on most good images (no leads, a texture, often a grayscale part) gets a
one-line error. The label is the class asked for (`--class bent_lead --method
lead-bend`). Parents name the good image only: no real defect is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image

from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import read_image
from defectsynth.synth.base import Generator, Sample
from defectsynth.synth.leads import Leads, end_hole, find_leads
from defectsynth.synth.part import PartModel, _disk
from defectsynth.synth.registry import register_generator

FIT_LOOKS = 9  # good images fit() counts the leads on
FIT_SHARE = 0.5  # the usual lead count must be found on at least this share of them
DRAWS = 20  # good images one sample may try before it gives up
RING_PIXELS = 16  # fewer board pixels than this around the rebuilt place: its brightness is left as it is


def _blend(under: np.ndarray, over: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None] if under.ndim == 3 else alpha
    return np.clip(a * over + (1 - a) * under.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)


@register_generator("lead-bend")
class LeadBend(Generator):
    """A lead bent by `min_deg`-`max_deg` degrees (either way) at `at_from`-`at_to` of its length from the
    body; with `cut`, cut there instead."""

    def __init__(self, min_deg: float = 15.0, max_deg: float = 45.0, at_from: float = 0.05,
                 at_to: float = 0.35, cut: bool = False, **_ignored):
        if not 0 <= min_deg <= max_deg <= 180:
            raise DefectsynthError(f"{self.name} min_deg {min_deg}, max_deg {max_deg}: use "
                                   "0 <= min_deg <= max_deg <= 180")
        if not 0 <= at_from <= at_to < 1:
            raise DefectsynthError(f"{self.name} at_from {at_from}, at_to {at_to}: use shares of the lead's "
                                   "length, 0 <= at_from <= at_to < 1")
        self.config = dict(at_from=at_from, at_to=at_to, cut=cut,
                           **({} if cut else dict(min_deg=min_deg, max_deg=max_deg)))
        self.goods: list[str] = []
        self.part: PartModel | None = None
        self.lead_count = 0  # the part's usual number of leads, as found on good images
        self.found_on = (0, 0)  # (good images where lead_count leads were found, good images looked at)

    def fit(self, rows: list[Row]) -> None:
        goods = [r.path for r in rows if r.label == GOOD]
        if not goods:
            raise DefectsynthError(f"{self.name} needs good training images (train/good is empty)")
        self.part = PartModel.from_paths(goods)
        # the part model is measured at one image size; a good image of another size cannot carry its leads
        h, w = self.part.full_shape
        self.goods = [p for p in goods if _size(p) == (w, h)]
        looks = self.goods[:: max(1, len(self.goods) // FIT_LOOKS)][:FIT_LOOKS]
        counts = Counter(len(find_leads(self.part, read_image(p)).masks) for p in looks)
        counts.pop(0, None)
        self.lead_count, found = max(counts.items(), key=lambda kv: (kv[1], -kv[0]), default=(0, 0))
        self.found_on = (found, len(looks))
        if found < FIT_SHARE * len(looks):
            raise DefectsynthError(f"{self.name} found the part's leads one by one on only {found} of "
                                   f"{len(looks)} good training images: it is for fixtured parts with leads "
                                   "on a repeating board, in colour; use --method cutpaste")

    def notes(self, label: str) -> list[str]:
        found, looked = self.found_on
        return [f"{self.name} {label}: the part's {self.lead_count} leads found one by one on {found} of "
                f"{looked} good images looked at; defects are made on images where they are found"]

    def sample(self, label: str, n: int, rng: np.random.Generator) -> Iterator[Sample]:
        for _ in range(n):
            for _ in range(DRAWS):
                path = self.goods[rng.integers(len(self.goods))]
                image = read_image(path)
                leads = find_leads(self.part, image)
                # an image where a lead was missed or split is passed over: a missed lead's hole, not rebuilt,
                # could be copied, lead stub and all, into the hole a bent or cut lead leaves
                if len(leads.masks) != self.lead_count:
                    continue
                out, mask, params = self._change(image, leads, rng)
                if mask.any():  # a piece turned wholly out of the picture is drawn again
                    break
            else:
                raise DefectsynthError(f"{self.name} found the part's {self.lead_count} leads on none of "
                                       f"{DRAWS} good images in a row; use --method cutpaste")
            yield Sample(image=out, mask=mask, label=label, parents=[path],
                         params={**self.config, **params, "good": path})

    def _change(self, image: np.ndarray, leads: Leads,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        settings = self.config
        h, w = image.shape[:2]
        side = min(h, w)
        k = int(rng.integers(len(leads.masks)))
        lead = leads.masks[k]
        others = np.zeros_like(lead)
        for j, m in enumerate(leads.masks):
            if j != k:
                others |= m
        ys, xs = np.nonzero(lead)
        reach = leads.from_body[ys, xs]
        share = float(rng.uniform(settings["at_from"], settings["at_to"]))
        at = share * float(reach.max())
        band = np.abs(reach - at) < max(1.0, side / 128)
        if not band.any():
            band = reach == reach[np.argmin(np.abs(reach - at))]
        pivot = (float(xs[band].mean()), float(ys[band].mean()))
        # a pixel or two short of the point, so that a cut's end is clean and a bend's piece joins its stub
        piece = (lead & (leads.from_body >= at - side / 128)).astype(np.uint8)

        # the piece's old place and its end's hole, never another lead or the body
        keep = (cv2.dilate(others.astype(np.uint8), _disk(side / 256)) > 0) | leads.body
        vacated = (cv2.dilate(piece, _disk(side / 64)) > 0) & (leads.from_body >= at - side / 128)
        vacated = (vacated | end_hole(lead, leads.from_body, side)) & ~keep
        on_part = cv2.dilate((lead | others | leads.body).astype(np.uint8), _disk(side / 128)) > 0
        ring = (cv2.dilate(vacated.astype(np.uint8), _disk(side / 64)) > 0) & ~vacated & ~on_part
        gain = 1.0
        if ring.sum() >= RING_PIXELS:
            gain = (np.median(image[ring].astype(np.float32) + 1, axis=0)
                    / np.median(leads.board[ring].astype(np.float32) + 1, axis=0))
        bare = np.clip(leads.board.astype(np.float32) * gain, 0, 255)
        out = _blend(image, bare, cv2.GaussianBlur(vacated.astype(np.float32), (0, 0), max(0.5, side / 256)))
        params = {"lead": k, "at_share": round(share, 3)}
        if settings["cut"]:
            return out, vacated, params

        angle = float(rng.choice([-1.0, 1.0]) * rng.uniform(settings["min_deg"], settings["max_deg"]))
        turn = cv2.getRotationMatrix2D(pivot, angle, 1.0)
        turned = cv2.warpAffine(piece, turn, (w, h), flags=cv2.INTER_NEAREST) > 0
        metal = cv2.warpAffine(image, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        alpha = cv2.GaussianBlur(turned.astype(np.float32), (0, 0), max(0.5, side / 512)) * turned
        out = _blend(out, metal.astype(np.float32), alpha)
        mask = cv2.dilate(turned.astype(np.uint8), _disk(side / 128)) > 0
        return out, mask, {**params, "bend_deg": round(angle, 2)}


@register_generator("lead-cut")
class LeadCut(LeadBend):
    """A lead cut at `at_from`-`at_to` of its length from the body, the piece beyond gone: cut leads made the
    way `lead-bend` makes bends, so that the two differ only in where the piece went."""

    def __init__(self, at_from: float = 0.2, at_to: float = 0.7, **kwargs):
        kwargs.pop("cut", None)  # a lead-cut always cuts
        super().__init__(cut=True, at_from=at_from, at_to=at_to, **kwargs)


def _size(path: str) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it."""
    with Image.open(path) as im:
        return im.size
