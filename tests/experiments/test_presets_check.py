"""`metaplastic check` measures every preset's plausibility constraints (whole presets:
second tier). It must work for every network kind — spiking networks included."""

import pytest

from metaplastic.cli import main
from metaplastic.experiments.presets import PRESETS


@pytest.mark.tier2
@pytest.mark.parametrize("name", list(PRESETS))
def test_check_works_for_every_preset(name, capsys):
    code = main(["check", name])
    out = " ".join(capsys.readouterr().out.split())
    # every preset's declared constraints hold (a run would otherwise stop with exit 4)
    assert code == 0, out
    assert "Traceback" not in out and "FAILS" not in out
    for constraint in ("locality", "no_weight_transport", "online", "dale", "spikes_only"):
        assert constraint in out


@pytest.mark.tier2
def test_check_spiking_digits_with_a_hidden_layer(capsys):
    # the weight-transport check used to call forward() on a spiking network
    assert main(["check", "spiking-digits", "--set", "network.hidden=[8]",
                 "--set", "task.hold=4"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no_weight_transport" in out and "holds" in out
