"""metaplastic.progress: a long library call shows a bar on a terminal and nothing
elsewhere; a callable gets the reports; False is silent."""

import io

import jax
import jax.numpy as jnp
import pytest
from rich.console import Console

import metaplastic as mp
from metaplastic import ConfigError, progress
from metaplastic.meta.objective import WholeEpisodes


class Bowl(WholeEpisodes):
    def __call__(self, theta, key):
        return jnp.sum(theta["x"] ** 2), {"nonfinite": jnp.zeros(())}

    def value_and_grad(self, theta, key):
        (value, aux), g = jax.value_and_grad(self, has_aux=True)(theta, key)
        return value, aux, g


OUTER = mp.MetaGradient(steps=20, lr=0.1, optimizer="sgd", clip=0, chunk=10)
THETA0 = {"x": jnp.ones(2)}


def test_outer_run_draws_a_bar_on_a_terminal_and_nothing_elsewhere(monkeypatch, capsys):
    screen = io.StringIO()
    real = progress.bar

    def on_screen(what, total, console=None):  # a terminal we can read
        return real(what, total, Console(file=screen, force_terminal=True, width=100))

    monkeypatch.setattr(progress, "bar", on_screen)
    monkeypatch.setattr(progress, "interactive", lambda: True)
    OUTER.run(Bowl(), THETA0, key=jax.random.key(0))
    assert "meta-training" in screen.getvalue() and "20/20" in screen.getvalue()
    screen.truncate(0)
    OUTER.run(Bowl(), THETA0, key=jax.random.key(0), progress=False)
    assert screen.getvalue() == ""
    seen = []  # a callable given (the command line's own bar): no second bar
    OUTER.run(Bowl(), THETA0, key=jax.random.key(0), progress=seen.append)
    assert screen.getvalue() == "" and len(seen) == 2
    monkeypatch.setattr(progress, "interactive", lambda: False)  # not a terminal
    OUTER.run(Bowl(), THETA0, key=jax.random.key(0))
    assert screen.getvalue() == "" and capsys.readouterr().err == ""


def test_a_callable_gets_every_chunk_and_bad_values_are_one_message():
    seen = []
    OUTER.run(Bowl(), THETA0, key=jax.random.key(0), progress=seen.append)
    assert [len(r) for r in seen] == [10, 10] and seen[-1][-1]["step"] == 20
    with pytest.raises(ConfigError, match="progress must be a callable"):
        OUTER.run(Bowl(), THETA0, key=jax.random.key(0), progress="yes")
