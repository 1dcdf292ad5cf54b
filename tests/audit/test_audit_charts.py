"""The audit charts' SVG: plotted positions read back against the axes' own tick labels, full
element names, n/N everywhere (hand-made series, no database)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from api.audit.charts import heat_map_svg, p_chart_svg, stay_scatter_svg
from api.audit.series import ChartData, Stay
from engine.audit import ElementSummary
from engine.compliance import Ratio
from engine.p_chart import p_chart

NS = {"s": "http://www.w3.org/2000/svg"}
LONG = "Rehabilitation weeks 2-6 - posture, hip mobility, light resistance, sit-stand endurance"
ELEMENTS = (ElementSummary("rehab", LONG, "post-discharge", Ratio(7, 9), Ratio(0, 9)),
            ElementSummary("drain", "Wound drain removed", "post-op", Ratio(3, 4), Ratio(0, 4)),
            ElementSummary("none", "Nothing counted here", "post-op", Ratio(), Ratio()))
STAYS = (Stay("anon-a", Ratio(9, 18), 2.5), Stay("anon-b", Ratio(15, 18), 6.0),
         Stay("anon-c", Ratio(18, 18), 3.25), Stay("anon-d", Ratio(12, 18), 11.0))
CHART = p_chart([("2025-01", 40, 50), ("2025-02", 45, 50), ("2025-03", 20, 40)])
DATA = ChartData("ERAS items", CHART, ("2025-01", "2025-02"), ELEMENTS,
                 {("rehab", "2025-01"): Ratio(3, 4), ("rehab", "2025-02"): Ratio(4, 5),
                  ("drain", "2025-02"): Ratio(3, 4)}, STAYS)


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def _number(label: str) -> float:
    found = re.search(r"-?\d+(\.\d+)?", label)
    assert found, label
    return float(found.group())


def _axis(root: ET.Element, which: str) -> tuple[float, float, float, float]:
    """(value, pixel) of the first and last tick, as a reader of the chart sees them: the tick
    label's number and where its grid line (y) or tick mark (x) is drawn."""
    group = root.find(f"s:g[@class='axis {which}-axis']", NS)
    assert group is not None
    labels = [_number(t.text or "") for t in group.findall("s:text[@class='tick']", NS)]
    marks = group.findall("s:line[@class='grid']" if which == "y" else "s:line[@class='tick-mark']", NS)
    pixels = [float(m.get("y1" if which == "y" else "x1", "nan")) for m in marks]
    assert len(labels) == len(pixels) >= 3, (labels, pixels)
    return labels[0], pixels[0], labels[-1], pixels[-1]


def _place(axis: tuple[float, float, float, float], value: float) -> float:
    v0, p0, v1, p1 = axis
    return p0 + (value - v0) / (v1 - v0) * (p1 - p0)


def test_stay_dots_sit_where_the_axes_say() -> None:
    root = _svg(stay_scatter_svg(DATA))
    x, y = _axis(root, "x"), _axis(root, "y")
    dots = {d.get("data-patient"): d for d in root.findall(".//s:circle[@class='dot']", NS)}
    for stay in STAYS:
        dot = dots[stay.patient]
        share = 100 * stay.compliance.done / 18
        assert float(dot.get("cx", "nan")) == pytest.approx(_place(x, share), abs=0.1)
        assert float(dot.get("cy", "nan")) == pytest.approx(_place(y, stay.days), abs=0.1)
    # The axes cover the data and the data fills most of the plot (not a line along one edge).
    assert y[0] <= 2.5 and y[2] >= 11.0 and (y[2] - y[0]) <= 2 * (11.0 - 2.5)
    heights = [float(d.get("cy", "nan")) for d in dots.values()]
    assert max(heights) - min(heights) >= 0.6 * abs(y[1] - y[3])


def test_stay_labels_carry_units() -> None:
    root = _svg(stay_scatter_svg(DATA))
    ticks = [t.text or "" for t in root.findall(".//s:g[@class='axis y-axis']/s:text[@class='tick']", NS)]
    assert all(t.endswith(" d") for t in ticks)
    titles = [t.text for t in root.findall(".//s:text[@class='axis-title']", NS)]
    assert titles == ["Length of stay (days)", "Compliance with ERAS items (%)"]


def test_p_chart_points_and_limits_match_the_axis() -> None:
    root = _svg(p_chart_svg(CHART, "ERAS items"))
    y = _axis(root, "y")
    points = root.findall(".//s:circle", NS)
    # hand-worked: p̄ = 105/140 = 0.75; March 20/40 = 0.5 is below 0.75 - 3·sqrt(0.1875/40) = 0.5446
    assert [p.get("data-month") for p in points] == ["2025-01", "2025-02", "2025-03"]
    assert [p.get("class") for p in points] == ["point", "point", "point outside"]
    for point, expected in zip(points, (80.0, 90.0, 50.0), strict=True):
        assert float(point.get("cy", "nan")) == pytest.approx(_place(y, expected), abs=0.1)
    centre = root.find(".//s:line[@class='centre']", NS)
    assert centre is not None and float(centre.get("y1", "nan")) == pytest.approx(_place(y, 75.0), abs=0.1)
    limits = [float(line.get("y1", "nan")) for line in root.findall(".//s:line[@class='limit']", NS)]
    assert limits[4:6] == [pytest.approx(_place(y, 100 * (0.75 + d)), abs=0.1) for d in (0.2054, -0.2054)]
    texts = " ".join(t.text or "" for t in root.iter(f"{{{NS['s']}}}text"))
    assert "n=50" in texts and "n=40" in texts


def test_heat_map_names_whole_and_n_over_n_on_every_bar() -> None:
    root = _svg(heat_map_svg(DATA))
    labels = root.findall(".//s:text[@class='label']", NS)
    lines = [[span.text or "" for span in label] for label in labels]
    assert [" ".join(parts) for parts in lines] == [e.title for e in ELEMENTS]  # nothing cut off
    assert len(lines[0]) >= 2  # the long name is wrapped, at spaces only
    bars = [t.text for t in root.findall(".//s:text[@class='bar-label']", NS)]
    assert bars == ["77.8% (7/9)", "75% (3/4)", "no data"]


def test_heat_map_cells_and_empty_cells() -> None:
    root = _svg(heat_map_svg(DATA))
    cells = {(c.get("data-element"), c.get("data-month")): c for c in root.findall(".//s:rect", NS)
             if "cell" in (c.get("class") or "")}
    assert len(cells) == 3 * 2
    assert "(3/4)" in (cells[("rehab", "2025-01")].findtext("s:title", "", NS))
    empty = sorted(k for k, c in cells.items() if c.get("class") == "cell empty")
    assert empty == [("drain", "2025-01"), ("none", "2025-01"), ("none", "2025-02")]
