"""One table of the random-key streams: what each key of a run is drawn from.

A run's keys all come from its ``seed``. Meta-training splits ``key(seed)`` into θ0's key
and the outer loop's (:func:`metaplastic.experiments.lifecycle.run_keys`); everything else
folds a stream number of this table into ``key(seed)``, so that evaluation, tuning,
figures, explanations, checks and recovery never reuse a key of training or of each
other (:func:`stream_key`). The numbers are fixed: changing one changes results.
"""

from __future__ import annotations

import jax

#: inside an episode: the task's reset key is folded from the episode key with this
#: number (the network's weights use the episode key itself)
ENV = 0x5EED
#: held-out evaluation tasks (``metaplastic eval``)
EVAL = 1_000_003
#: baselines' tuning grids (meta-training tasks, keys neither training nor evaluation use)
TUNE = 2_000_003
#: the episode recorded after training for the figures (``episode.npz``)
EPISODE = 2_000_029
#: the signals sampled by ``metaplastic explain``
EXPLAIN = 3_000_017
#: the plausibility checks (``metaplastic check`` and declared constraints)
PLAUSIBILITY = 4_000_037
#: rule recovery's replays, resamples and refits (``metaplastic recover``)
RECOVERY = 5_000_029
#: held-in draws of a selection-meta run's training problems (``HELD_IN + i``)
HELD_IN = 10_000_019
#: keep-best θ: the fixed validation tasks (meta-training distribution), from the run's
#: meta-training key
VALIDATION = 6_000_047
#: after a rollback: the meta-training key is folded with ``ROLLBACK + n`` (n rollbacks)
ROLLBACK = 7_000_003

TABLE = {"env": ENV, "eval": EVAL, "tune": TUNE, "episode": EPISODE, "explain": EXPLAIN,
         "plausibility": PLAUSIBILITY, "recovery": RECOVERY, "held_in": HELD_IN,
         "validation": VALIDATION, "rollback": ROLLBACK}


def stream_key(seed: int, stream: int) -> jax.Array:
    """The key of ``stream`` (a number of this table) of the run with ``seed``."""
    return jax.random.fold_in(jax.random.key(seed), stream)
