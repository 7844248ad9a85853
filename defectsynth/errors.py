"""User-facing errors: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class DefectsynthError(Exception):
    """A problem the user can fix; the message names the file or option and the fix."""


class LeakageError(DefectsynthError):
    """A held-out real image was about to reach a generator, a rebalancing step or a training run."""
