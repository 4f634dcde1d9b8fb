"""``python -m bench.charts`` measures every chart the dashboard draws (no time is asserted)."""

from __future__ import annotations

from bench import charts as bench_charts
from dashboard import charts


def test_every_template_is_measured_both_ways() -> None:
    assert {name for name, _ in bench_charts.CHARTS} == set(charts.TEMPLATES)
    found = bench_charts.figures(repeat=2)
    assert [f.name.split(":")[0] for f in found] == [name for name, _ in bench_charts.CHARTS]
    for figure in found:
        per_run, kept = figure.details["altair_per_run_ms"], figure.details["kept_spec_ms"]
        assert isinstance(per_run, float) and isinstance(kept, float)
        assert per_run > 0 and kept > 0
        assert figure.limit == bench_charts.LIMIT and figure.ratio is not None


def test_the_kept_spec_is_what_altair_builds() -> None:
    """The copy a page draws is Altair's validated output, placeholder data aside."""
    import altair as alt

    for name, args in bench_charts.CHARTS:
        with alt.theme.enable("none"):
            built = charts.TEMPLATES[name](*args).to_dict()
        assert charts.spec(name, *args) == charts._strip_placeholder_data(built)
