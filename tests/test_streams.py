import jax
import numpy as np

from metaplastic import streams


def test_every_stream_has_its_own_number():
    values = list(streams.TABLE.values())
    assert len(set(values)) == len(values)


def test_a_stream_key_is_the_seed_key_folded_with_the_number():
    got = jax.random.key_data(streams.stream_key(3, streams.EVAL))
    want = jax.random.key_data(jax.random.fold_in(jax.random.key(3), 1_000_003))
    np.testing.assert_array_equal(got, want)
