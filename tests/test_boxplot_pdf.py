"""testbed.analysis.boxplot_pdf reads a notched matplotlib box plot back out of its vector PDF:
checked on plots this test draws itself from known data (linear and log axes, the way
WetLinks' plotting scripts draw theirs), so no third-party file is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testbed.analysis import boxplot_pdf


def _draw(path: Path, data: list[np.ndarray], log: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2.5))
    ax.boxplot(data, notch=True)
    ax.set_xticks([1, 2], ["Alpha", "Beta"])
    if log:  # as WetLinks' latency_analysis.py: a log axis with plain-number tick labels
        ax.set_yscale("log")
        ticks = [15, 25, 50, 100, 200]
        ax.set_yticks(ticks, [str(t) for t in ticks])
        ax.set_ylim(15, 220)
    fig.savefig(path)
    plt.close(fig)


@pytest.mark.unit
@pytest.mark.parametrize("log", [False, True])
def test_reads_quartiles_n_and_p99_from_the_drawn_pdf(tmp_path: Path, log: bool) -> None:
    rng = np.random.default_rng(4)
    # a body plus a 2.5 % tail past the whisker (as WetLinks' RTTs): p99 among the fliers,
    # p95 inside the whisker
    data = [np.concatenate([rng.lognormal(np.log(mu), 0.1, int(n * 0.975)),
                            rng.uniform(110, 180, n - int(n * 0.975))])
            for mu, n in ((60, 20_000), (70, 8_000))]
    pdf = tmp_path / "box.pdf"
    _draw(pdf, data, log)
    boxes = boxplot_pdf.read_boxes(pdf, log=log)
    assert [b.label for b in boxes] == ["Alpha", "Beta"]
    for b, d in zip(boxes, data, strict=True):
        q1, med, q3, p99 = np.percentile(d, [25, 50, 75, 99])
        assert b.median == pytest.approx(med, rel=2e-3)
        assert (b.q1, b.q3) == (pytest.approx(q1, rel=2e-3), pytest.approx(q3, rel=2e-3))
        assert b.n == pytest.approx(len(d), rel=0.05)
        assert b.upper_percentile(99) == pytest.approx(p99, rel=5e-3)
        assert b.upper_percentile(95) is None  # inside the whisker: bounded only
        hi = d[d <= q3 + 1.5 * (q3 - q1)].max()
        assert b.whisker_hi == pytest.approx(hi, rel=2e-3)


@pytest.mark.unit
def test_a_file_without_a_box_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.pdf"
    bad.write_bytes(b"%PDF-1.4\nnothing here\n")
    with pytest.raises(ValueError, match=r"x\.pdf"):
        boxplot_pdf.read_boxes(bad)
    with pytest.raises(ValueError, match="cannot read"):
        boxplot_pdf.read_boxes(tmp_path / "missing.pdf")
