"""Neuron models behind one interface: ``init_state(n)``, ``step(state, current) ->
(output, state, v)`` and ``derivative(v)`` (the local gain for feedback errors); the class
constant ``spiking`` says whether the outputs are 0/1 spikes.

Registered (``network.neuron`` in a config): ``rate`` (:mod:`metaplastic.neurons.rate`),
``lif`` and ``alif`` (:mod:`metaplastic.neurons.lif`), ``learned`` (a transfer function
meta-learned with the rule: :mod:`metaplastic.neurons.learned`); a user's own model registers with
``metaplastic.register("neuron", name, cls)`` or is named ``"module:Class"``.
"""

from metaplastic.neurons.learned import LearnedNeuron
from metaplastic.neurons.lif import LIFNeuron
from metaplastic.neurons.rate import ACTIVATIONS, RateNeuron, make
from metaplastic.registry import register

register("neuron", "rate", RateNeuron)
register("neuron", "lif", LIFNeuron)
register("neuron", "learned", LearnedNeuron)
register("neuron", "alif", LIFNeuron, defaults={"beta": 0.5},
         doc="Adaptive LIF: each spike raises the threshold by beta (default 0.5).")

__all__ = ["ACTIVATIONS", "LIFNeuron", "LearnedNeuron", "RateNeuron", "make"]
