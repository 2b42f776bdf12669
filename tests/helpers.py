"""Small helpers shared by several test modules."""

from metaplastic.signals import layer_signals
from metaplastic.signals import random_signals as _random


def random_signals(key, n_in: int, n_out: int):
    """A layer's signals with the neurons' fields (feedback errors included) drawn N(0, 1);
    no modulator and no traces (rate-network tests)."""
    s = _random(key, n_out, n_in)
    return layer_signals(s.pre, s.post, s.w, s.e_pre, s.e_post)


def layout_problems(fig, legend_share: float = 0.35) -> list[str]:
    """What keeps a matplotlib figure from going into a talk unedited, from what its
    artists draw: an axes whose drawn labels, tick labels, title or legend reach beyond the
    figure (they are cut off), a figure-level text (suptitle, figure legend) beyond it,
    and a legend inside an axes covering more than ``legend_share`` of it."""
    renderer = fig.canvas.get_renderer()
    box = fig.bbox

    def outside(ext) -> bool:
        return (ext.x0 < box.x0 - 1 or ext.x1 > box.x1 + 1 or ext.y0 < box.y0 - 1
                or ext.y1 > box.y1 + 1)

    problems = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        ext = ax.get_tightbbox(renderer)  # only what is drawn
        if ext is not None and outside(ext):
            what = ax.get_title() or ax.get_ylabel() or ax.get_xlabel() or "an axes"
            problems.append(f"{what[:40]!r}: its text reaches beyond the figure "
                            f"(cut off)")
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        lb, ab = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        w = max(0.0, min(lb.x1, ab.x1) - max(lb.x0, ab.x0))
        h = max(0.0, min(lb.y1, ab.y1) - max(lb.y0, ab.y0))
        share = w * h / max(ab.width * ab.height, 1e-9)
        if share > legend_share:
            problems.append(f"the legend of {ax.get_title()[:30]!r} covers {share:.0%} of "
                            f"its axes")
    for artist in [*fig.texts, *fig.legends, *([fig._suptitle] if fig._suptitle else [])]:
        if artist.get_visible() and outside(artist.get_window_extent(renderer)):
            label = artist.get_text() if hasattr(artist, "get_text") else "the legend"
            problems.append(f"{str(label)[:40]!r} reaches beyond the figure (cut off)")
    return problems


#: a 4-step polynomial fit, the tail of a config of a fit to recordings in the tests
FAST_FIT = ('[rule]\nname = "polynomial"\neta = 0.05\n'
            '[meta]\nsteps = 4\nchunk = 2\ntasks_per_step = 2\nlr = 0.02\n'
            '[eval]\ntasks = 2\nbaselines = []\n')


def run_fit(tmp_path, head: str, name: str):
    """``metaplastic run`` of a config ``head`` + :data:`FAST_FIT` (written to
    ``tmp_path/name.toml``) without evaluation; its run directory."""
    from metaplastic.cli import main

    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(head + FAST_FIT)
    out = tmp_path / "runs"
    assert main(["run", str(cfg), "--out", str(out), "--no-eval"]) == 0
    (run,) = list(out.iterdir())
    return run


def recover_then_brian2(run, capsys) -> tuple[dict, dict | None, str]:
    """``metaplastic recover RUN`` then ``metaplastic export RUN --format brian2``: (its
    recovery.json, its brian2_check.json — None where Brian2 is not installed — and the
    export's printed text, whitespace collapsed)."""
    import json

    from metaplastic.analysis import brian2_export
    from metaplastic.cli import main

    assert main(["recover", str(run)]) == 0
    recovery = json.loads((run / "recovery.json").read_text())
    capsys.readouterr()
    assert main(["export", str(run), "--format", "brian2"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert (run / "export" / brian2_export.SCRIPT).is_file()
    check = (json.loads((run / "export" / "brian2_check.json").read_text())
             if brian2_export.brian2_available() else None)
    return recovery, check, printed
