"""Garbage-collector settings for a server process that holds many requests open."""

from __future__ import annotations

import gc

FULL_GC_EVERY = 500  # middle-generation collections between full ones (Python's default: 10)


def tune_gc() -> None:
    """Keep full garbage collections from stalling every request for a tenth of a second.

    Each open long poll holds a few hundred objects for tens of seconds, so a thousand devices
    keep some 200,000 objects alive, and Python's default thresholds ran a full collection (which
    scans them all: 150 ms on a small CPU) every few seconds, finding almost nothing: request
    garbage dies by reference counting, and young cycles die in the cheap young collections, which
    still run as usual. The heap built at startup (modules, the app, metadata) is frozen out of
    collections altogether.
    """
    gc.collect()
    gc.freeze()
    young, middle, _full = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_EVERY)
