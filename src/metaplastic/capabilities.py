"""Optional abilities of pieces, declared as small runtime-checkable protocols.

A piece (rule, task, network, neuron model, objective, outer loop) has the members its
kind requires (:data:`metaplastic.registry.PROTOCOLS`) and may have more: named terms,
linearity in θ, a fitted start, learned neuron parameters... Code asks
``isinstance(rule, HasNamedTerms)``, never ``getattr(rule, "term_names", None)`` or
``rule.family == "abcd"``: the ability is written once, here, and the docs' tables of
members (docs/extending.md) follow from these protocols. A test fails on ``getattr`` /
``hasattr`` / ``vars()`` / ``except AttributeError`` applied to a piece anywhere else.

The helper functions at the bottom give each ability's value with its default, for
pieces that do not declare it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


# --- rules ----------------------------------------------------------------------------------
@runtime_checkable
class HasNamedTerms(Protocol):
    """A rule whose θ weighs named terms (``pre*post``, ``post^2*w``): polynomial, term
    pool, and composed rules around them. ``term_names`` is in θ's order."""

    term_names: list[str]


@runtime_checkable
class HasTermValues(HasNamedTerms, Protocol):
    """Named terms whose values the rule computes from signals (floats, arrays or SymPy
    symbols): exportable as equations (``metaplastic export``) and readable out."""

    def term_values(self, s: Any) -> list: ...

    def term_coefficients(self, theta: Any) -> Any: ...


@runtime_checkable
class HasFreeTerms(HasNamedTerms, Protocol):
    """Named terms of which some are held at zero (excluded from the fit)."""

    free_terms: list[bool]


@runtime_checkable
class HasEta(Protocol):
    """A rule whose update is ``eta * (...)``: coefficients are in units of ``eta``."""

    eta: float


@runtime_checkable
class LinearInTheta(Protocol):
    """``dw(c θ) = c dw(θ)``: a learning rate is tuned by scaling θ (no rebuild). A rule
    declares it with ``linear_in_theta = True`` (composed rules say False)."""

    linear_in_theta: bool


@runtime_checkable
class HasSparsePart(Protocol):
    """The part of θ an L1 penalty applies to (e.g. the synapses' rule, not φ)."""

    def sparse_part(self, theta: Any) -> Any: ...


@runtime_checkable
class HoldsEntries(Protocol):
    """A rule some of whose θ entries do not act (a polynomial's excluded terms: held at
    zero). ``held(θ)`` is a pytree like θ, True where an entry does not act; an evolution
    strategy leaves those entries out of its search."""

    def held(self, theta: Any) -> Any: ...


@runtime_checkable
class HasRule(Protocol):
    """An objective of one rule (``Objective.rule``)."""

    rule: Any


@runtime_checkable
class HasNeuronParams(Protocol):
    """A rule whose θ also holds the neurons' learned parameters φ."""

    def neuron_params(self, theta: Any) -> Any: ...


@runtime_checkable
class HasFeedbackParams(Protocol):
    """A rule whose θ also holds the feedback synapses' rule (plastic feedback)."""

    def feedback_params(self, theta: Any) -> Any: ...


@runtime_checkable
class HasLayerStatistics(Protocol):
    """A rule with per-layer coefficient tables (Hebbian ABCD): ``layer_tables(θ)``
    gives, per layer, a dict of name -> array, recorded for the figures and exported."""

    def layer_tables(self, theta: Any) -> list[dict]: ...


@runtime_checkable
class HasPrecision(Protocol):
    """A rule that stores θ in a lower precision during the unroll (``"bfloat16"``)."""

    dtype: str


# --- tasks ----------------------------------------------------------------------------------
@runtime_checkable
class HasInitialWeights(Protocol):
    """A task that gives each instance's initial weights (recordings)."""

    def initial_weights(self, instance: Any) -> Any: ...


@runtime_checkable
class Records(Protocol):
    """A task that records extra per-step quantities of an episode (``record``)."""

    def record(self, instance: Any, env: Any) -> dict: ...


@runtime_checkable
class ObservesLayers(Protocol):
    """A task that sees every layer's rates after a step, not only the output's
    (recordings of hidden neurons): the inner loop calls ``transition_layers(instance,
    env, rates)`` (rates of layers 0..L) instead of ``transition(instance, env, output)``."""

    def transition_layers(self, instance: Any, env: Any, rates: tuple) -> Any: ...


@runtime_checkable
class HasOutcomes(Protocol):
    """A task whose trials have outcomes an experiment records (e.g. reward 0/1), given
    back from what a simulation recorded: every trial's choice and modulator (``(N, T)``
    arrays each)."""

    def outcomes(self, choices: Any, modulators: Any) -> Any: ...


@runtime_checkable
class Simulated(Protocol):
    """A task whose data a config may ask to simulate from a known rule first
    (``task.simulate``): recordings with ground truth."""

    simulates: bool


# --- objectives and outer loops -----------------------------------------------------------------
@runtime_checkable
class Segmented(Protocol):
    """An objective that unrolls in segments (truncated meta-gradients, persistent ES)."""

    n_steps: int

    def start(self, theta: Any, key: Any) -> Any: ...

    def segment(self, theta: Any, carry: Any, t0: Any, length: int) -> Any: ...


@runtime_checkable
class HasParts(Protocol):
    """An objective made of parts (a mixture of problems)."""

    parts: tuple


@runtime_checkable
class Conforms(Protocol):
    """An objective that checks a θ against the θ it expects."""

    def conform(self, theta: Any) -> Any: ...


@runtime_checkable
class Population(Protocol):
    """An outer loop that evaluates several members at once."""

    def members_at_once(self) -> int: ...


# --- values with their defaults ------------------------------------------------------------
def term_names(rule: Any) -> list[str]:
    """The rule's named terms, [] for a rule without them."""
    return list(rule.term_names) if isinstance(rule, HasNamedTerms) else []


def free_terms(rule: Any) -> list[bool]:
    names = term_names(rule)
    return ([bool(v) for v in rule.free_terms] if isinstance(rule, HasFreeTerms)
            else [True] * len(names))


def eta(rule: Any) -> float:
    """The rule's ``eta`` (1 for a rule whose coefficients carry their own scale)."""
    return float(rule.eta) if isinstance(rule, HasEta) else 1.0


def linear_in_theta(rule: Any) -> bool:
    return isinstance(rule, LinearInTheta) and bool(rule.linear_in_theta)


def precision(rule: Any) -> str:
    return rule.dtype if isinstance(rule, HasPrecision) else "float32"


def parts(objective: Any) -> tuple:
    """An objective's parts (itself alone when it has none)."""
    return tuple(objective.parts) if isinstance(objective, HasParts) else (objective,)


# --- more abilities, and their values with defaults ----------------------------------------
@runtime_checkable
class HasFamily(Protocol):
    """A rule's family name, as in the registry (``Rule.family``)."""

    family: str


@runtime_checkable
class HasInputNorm(Protocol):
    """A task whose inputs are rescaled before the network (dataset statistics)."""

    input_norm: str


@runtime_checkable
class HasTask(Protocol):
    """An objective over one task (``Objective.task``)."""

    task: Any


@runtime_checkable
class Stepped(Protocol):
    """An objective with the outer loops' step interface (``step_value``)."""

    def step_value(self, theta: Any, key: Any, inner: Any = ()) -> Any: ...


@runtime_checkable
class Starts(Protocol):
    """An objective that draws its tasks' instances and first carries (``start``)."""

    tasks_per_step: int

    def start(self, theta: Any, key: Any) -> Any: ...


@runtime_checkable
class Unrolled(Protocol):
    """An objective that differentiates an unroll of ``n_steps``: by ``grad_mode``
    (reverse or forward), storing it or ``checkpoint``-ing it."""

    n_steps: int
    grad_mode: str
    checkpoint: bool


@runtime_checkable
class HasLength(Protocol):
    """An objective whose unroll length the driver records (segments)."""

    length: int


@runtime_checkable
class KnowsTheta(Protocol):
    """An objective that knows its θ's shapes without computing (``theta_like``)."""

    theta_like: Any


@runtime_checkable
class HasShapes(Protocol):
    """A network: its weight shapes ``[(n_out, n_in), ...]``."""

    shapes: Any


@runtime_checkable
class NanPolicy(Protocol):
    """An outer loop that says what a non-finite meta-step does: "skip", "stop" or
    "rollback" (a streak of them undone as a blow-up is)."""

    on_nan: str


@runtime_checkable
class Differentiates(Protocol):
    """An outer loop that takes derivatives of the objective (meta-gradients)."""

    differentiates: bool


@runtime_checkable
class RandomLowering(Protocol):
    """An outer loop that says how its programs' random numbers are lowered on the CPU:
    ``threefry``, one of :data:`metaplastic.xla.THREEFRY_MODES` or "" for the process's
    default (:mod:`metaplastic.xla`)."""

    threefry: str


@runtime_checkable
class HasOuterKind(Protocol):
    """An outer loop's declared kind (gradient, evolutionary, learned-evolutionary)."""

    kind: str


@runtime_checkable
class HasDirection(Protocol):
    """An outer loop that says whether it minimises or maximises its objective."""

    direction: str


@runtime_checkable
class SetsTheta(Protocol):
    """An outer loop whose state's θ can be replaced (the guard's rollback scales its
    steps through it: :mod:`metaplastic.meta.guard`)."""

    def with_theta(self, state: Any, theta: Any) -> Any: ...


@runtime_checkable
class Spiking(Protocol):
    """A neuron model or network whose outputs are 0/1 spikes (``spiking``)."""

    spiking: bool


@runtime_checkable
class HasNeuronState(Protocol):
    """A neuron model that says whether it carries state from step to step."""

    stateful: bool


@runtime_checkable
class LearnedNeurons(Protocol):
    """A neuron model with meta-learned parameters (``learned``)."""

    learned: bool


def family(rule: Any) -> str:
    return rule.family if isinstance(rule, HasFamily) else type(rule).__name__


def input_norm(task: Any) -> str:
    return task.input_norm if isinstance(task, HasInputNorm) else "none"


def tasks_per_step(objective: Any) -> int:
    return objective.tasks_per_step if isinstance(objective, Starts) else 1


def on_nan(outer: Any) -> str:
    return outer.on_nan if isinstance(outer, NanPolicy) else "skip"


def differentiates(outer: Any) -> bool:
    return isinstance(outer, Differentiates) and bool(outer.differentiates)


def threefry(outer: Any) -> str:
    return outer.threefry if isinstance(outer, RandomLowering) else ""


def outer_kind(outer: Any) -> str:
    return outer.kind if isinstance(outer, HasOuterKind) else "evolutionary"


def sign(outer: Any) -> float:
    """+1 for an outer loop that minimises its objective, -1 for one that maximises it."""
    return -1.0 if isinstance(outer, HasDirection) and outer.direction == "maximize" else 1.0


def members_at_once(outer: Any) -> int:
    return outer.members_at_once() if isinstance(outer, Population) else 1


def spiking(piece: Any) -> bool:
    """Whether a neuron model (class or instance) or a network emits spikes."""
    return isinstance(piece, Spiking) and bool(piece.spiking)


def stateful(neuron: Any) -> bool:
    return neuron.stateful if isinstance(neuron, HasNeuronState) else True


def learned(neuron: Any) -> bool:
    return isinstance(neuron, LearnedNeurons) and bool(neuron.learned)


def feedback_params(rule: Any, theta: Any) -> Any:
    """The feedback synapses' rule coefficients within θ (plastic feedback), else None."""
    return rule.feedback_params(theta) if isinstance(rule, HasFeedbackParams) else None


def neuron_params(rule: Any, theta: Any) -> Any:
    """Learned neurons' parameters within θ (rules that hold them), else ()."""
    return rule.neuron_params(theta) if isinstance(rule, HasNeuronParams) else ()


def held(rule: Any, theta: Any) -> Any:
    """Where θ's entries do not act (:class:`HoldsEntries`), or None: every one acts."""
    return rule.held(theta) if isinstance(rule, HoldsEntries) else None


def sparse_part(rule: Any, theta: Any) -> Any:
    """What an L1 penalty applies to: the rule's sparse part, else all of θ."""
    return rule.sparse_part(theta) if isinstance(rule, HasSparsePart) else theta
