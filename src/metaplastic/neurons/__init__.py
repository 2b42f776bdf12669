"""Neuron models: pure ``init_state`` / ``step`` functions.

Only rate neurons exist so far (see :mod:`metaplastic.neurons.rate`).
"""

from metaplastic.neurons.rate import ACTIVATIONS, RateNeuron, make

__all__ = ["ACTIVATIONS", "RateNeuron", "make"]
