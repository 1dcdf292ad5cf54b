"""The p-chart's arithmetic on a table worked by hand (figures to 4 decimals, from a calculator)."""

from __future__ import annotations

import pytest

from engine.p_chart import p_chart

# month, compliant, eligible; p̄ = (40 + 45 + 20 + 50) / (50 + 50 + 40 + 60) = 155 / 200 = 0.775
# p̄(1 - p̄) = 0.174375
#   n = 50: 3·sqrt(0.174375 / 50) = 3 × 0.059055 = 0.177165 -> 0.5978 .. 0.9522
#   n = 40: 3·sqrt(0.174375 / 40) = 3 × 0.066025 = 0.198076 -> 0.5769 .. 0.9731
#   n = 60: 3·sqrt(0.174375 / 60) = 3 × 0.053910 = 0.161731 -> 0.6133 .. 0.9367
TABLE = [("2025-01", 40, 50), ("2025-02", 45, 50), ("2025-03", 20, 40), ("2025-04", 50, 60)]
LIMITS = {"2025-01": (0.5978, 0.9522), "2025-02": (0.5978, 0.9522),
          "2025-03": (0.5769, 0.9731), "2025-04": (0.6133, 0.9367)}


def test_centre_line_is_pooled_not_the_mean_of_months() -> None:
    chart = p_chart(TABLE)
    assert chart.centre == pytest.approx(0.775)
    # the mean of the monthly proportions would be (0.8 + 0.9 + 0.5 + 0.8333) / 4 = 0.7583
    assert chart.centre != pytest.approx(0.7583, abs=1e-3)


def test_limits_per_month_follow_each_months_n() -> None:
    chart = p_chart(TABLE)
    for point in chart.points:
        low, high = LIMITS[point.label]
        assert (point.lower, point.upper) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


def test_only_the_month_below_its_limit_is_outside() -> None:
    chart = p_chart(TABLE)
    assert [p.label for p in chart.outside] == ["2025-03"]  # 0.5 < 0.5769
    assert [p.outside for p in chart.points] == [False, False, True, False]


def test_limits_are_clipped_to_zero_and_one() -> None:
    # p̄ = 19/20 = 0.95; n = 10: 3·sqrt(0.0475 / 10) = 0.2068 -> 0.7432 .. 1.1568, clipped to 1
    # p̄ = 1/20 = 0.05 mirrors it: -0.1568 clipped to 0
    high = p_chart([("a", 10, 10), ("b", 9, 10)])
    assert [(p.lower, p.upper) for p in high.points] == [(pytest.approx(0.7432, abs=1e-4), 1.0)] * 2
    low = p_chart([("a", 0, 10), ("b", 1, 10)])
    assert [(p.lower, p.upper) for p in low.points] == [(0.0, pytest.approx(0.2568, abs=1e-4))] * 2


def test_months_with_nothing_eligible_are_left_out() -> None:
    chart = p_chart([("a", 0, 0), ("b", 3, 4)])
    assert [p.label for p in chart.points] == ["b"] and chart.centre == 0.75
    assert p_chart([("a", 0, 0)]).centre is None
