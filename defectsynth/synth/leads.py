"""Each of a fixtured part's leads in one image, and the bare board behind the whole part.

The board behind the part is rebuilt from itself whole board periods away (PartModel.fill), from where
no part is: the part's usual place, what touches it and does not repeat with the board (the leads' ends),
grown. Against that bare board, metal shows twice: it is greyer than the copper it hides, and over the
board's own grey features (holes, stripes) it is lighter or darker while staying grey. The leads are the
pieces of metal that leave the part's body, are lighter than it, and reach at least half as far from it
as the longest does. A lead's end goes into a hole, where it is too dark for the first pass to see all of
it: the board is rebuilt a second time with a disk around each end hidden too, so the bare board shows
empty holes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.synth.part import PartModel, _disk, _lab

CHROMA_DROP = 7.0  # LAB chroma the copper board loses where metal lies on it
LIGHTNESS_STEP = 30.0  # over a hole or a stripe, metal differs this much in LAB lightness from the board
GREY = 10.0  # ... and is at most this colourful
TIP_RADIUS = 1 / 14  # share of the side hidden around each lead's end: its hole, whole, and a little board
LENGTH_SHARE = 0.5  # a lead reaches at least this share of the longest one's distance from the body


@dataclass
class Leads:
    board: np.ndarray  # the image with the whole part rebuilt as bare board
    body: np.ndarray  # the part's body, grown by a pixel or two (bool)
    from_body: np.ndarray  # distance (px) of each pixel from the body
    masks: list[np.ndarray]  # one bool mask per lead; empty when none is found


def _chroma(lab: np.ndarray) -> np.ndarray:
    return np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)


@dataclass
class _Seen:
    """What both passes need of the image itself, worked out once."""

    lab: np.ndarray
    chroma: np.ndarray
    body: np.ndarray  # grown by a pixel or two
    from_body: np.ndarray
    body_lightness: float


def _look(part: PartModel, image: np.ndarray) -> _Seen:
    side = min(image.shape[:2])
    lab = _lab(image)
    body = cv2.dilate(part.body(image).astype(np.uint8), _disk(side / 128)) > 0
    from_body = cv2.distanceTransform((~body).astype(np.uint8), cv2.DIST_L2, 5)
    body_lightness = float(np.median(lab[..., 0][body])) if body.any() else 0.0
    return _Seen(lab, _chroma(lab), body, from_body, body_lightness)


def _pass(part: PartModel, image: np.ndarray, seen: _Seen, hide: np.ndarray) -> Leads:
    side = min(image.shape[:2])
    board = part.fill(image, hide, free=~hide)
    a, b = seen.lab, _lab(board)
    grey_on_copper = _chroma(b) - seen.chroma > CHROMA_DROP
    grey_on_dark = (np.abs(a[..., 0] - b[..., 0]) > LIGHTNESS_STEP) & (seen.chroma < GREY)
    metal = ((grey_on_copper | grey_on_dark) & hide).astype(np.uint8)
    metal = cv2.morphologyEx(metal, cv2.MORPH_OPEN, _disk(side / 256))
    metal = cv2.morphologyEx(metal, cv2.MORPH_CLOSE, _disk(side / 128)) > 0
    body, from_body = seen.body, seen.from_body
    count, labels = cv2.connectedComponents((metal & ~body).astype(np.uint8))
    pieces = [labels == i for i in range(1, count)]
    # a lead leaves the body and is lighter than it (a dark sliver of the case's own edge is not a lead)
    pieces = [m for m in pieces if from_body[m].min() < side / 32
              and float(np.median(a[..., 0][m])) >= seen.body_lightness + LIGHTNESS_STEP]
    longest = max((float(from_body[m].max()) for m in pieces), default=0.0)
    masks = [m for m in pieces if from_body[m].max() >= LENGTH_SHARE * longest]
    return Leads(board=board, body=body, from_body=from_body, masks=masks)


def end_hole(lead: np.ndarray, from_body: np.ndarray, side: int) -> np.ndarray:
    """A disk (bool) over the hole a lead's end goes into: centred half its radius beyond the farthest metal
    found, along the lead's last fifth, since the end's darkest part, inside the hole, is not found."""
    ys, xs = np.nonzero(lead)
    reach = from_body[ys, xs]
    k = int(np.argmax(reach))
    last = reach >= 0.8 * reach[k]
    way = np.array([xs[k] - xs[last].mean(), ys[k] - ys[last].mean()])
    way = way / max(float(np.hypot(*way)), 1e-6)
    radius = max(1, round(TIP_RADIUS * side))
    centre = np.array([xs[k], ys[k]]) + way * radius / 2
    disk = np.zeros(lead.shape, np.uint8)
    cv2.circle(disk, (round(float(centre[0])), round(float(centre[1]))), radius, 1, -1)
    return disk > 0


def find_leads(part: PartModel, image: np.ndarray) -> Leads:
    """The leads of the part in `image` (a fixtured part on a repeating board); no masks when the category
    has no part, no repeating board or no leads."""
    side = min(image.shape[:2])
    if not part.found or not any(part.periods) or image.shape[:2] != part.full_shape:
        return Leads(board=image, body=np.zeros(image.shape[:2], bool),
                     from_body=np.zeros(image.shape[:2], np.float32), masks=[])
    place = cv2.dilate(part.usual_place(image).astype(np.uint8), _disk(side / 32)) > 0
    hide = cv2.dilate(part.extend(image, place).astype(np.uint8), _disk(side / 32)) > 0
    seen = _look(part, image)
    first = _pass(part, image, seen, hide)
    ends = np.zeros(hide.shape, bool)
    for lead in first.masks:
        ends |= end_hole(lead, seen.from_body, side)
    return _pass(part, image, seen, hide | ends)
