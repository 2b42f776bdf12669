"""Small helpers shared by several test modules."""

from metaplastic.signals import layer_signals
from metaplastic.signals import random_signals as _random


def random_signals(key, n_in: int, n_out: int):
    """A layer's signals with the neurons' fields (feedback errors included) drawn N(0, 1);
    no modulator and no traces (rate-network tests)."""
    s = _random(key, n_out, n_in)
    return layer_signals(s.pre, s.post, s.w, s.e_pre, s.e_post)
