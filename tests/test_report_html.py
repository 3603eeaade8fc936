"""`report --format html`: one self-contained page whose SVG charts a parser can find."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from tests.support.history import HOUR, NOW, History, cli, standard_history


class Page(HTMLParser):
    """Every start tag with its attributes, and which <svg> (by id) it sits in."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str], str | None]] = []
        self.svg: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self.svg = attributes.get("id")
        self.tags.append((tag, attributes, self.svg))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.svg = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def in_chart(self, chart: str, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [
            a
            for t, a, svg in self.tags
            if svg == chart and t == tag and (cls is None or a.get("class") == cls)
        ]


def render(tmp_path: Path, hours: str = "24") -> Page:
    out = tmp_path / "report.html"
    result = cli(tmp_path, "report", hours, "--format", "html", "--output", str(out))
    assert result.exit_code == 0, result.output
    page = Page()
    page.feed(out.read_text())
    return page


def test_the_page_has_both_svg_charts(tmp_path: Path) -> None:
    standard_history(History.at(tmp_path / "state.db"))
    page = render(tmp_path)
    charts = [a.get("id") for t, a, _ in page.tags if t == "svg"]
    assert charts == ["chart-incidents", "chart-mttr"]
    # One bar segment per (hour, severity) with incidents: five incidents in five hours.
    bars = page.in_chart("chart-incidents", "rect", "bar")
    assert len(bars) == 5
    assert all(float(b["height"]) > 0 for b in bars)
    # MTTR points for the hours whose incidents were resolved (three of them).
    assert len(page.in_chart("chart-mttr", "circle", "point")) == 3
    assert page.in_chart("chart-mttr", "line", "mean")


def test_the_page_fetches_nothing(tmp_path: Path) -> None:
    standard_history(History.at(tmp_path / "state.db"))
    page = render(tmp_path)
    tags = {t for t, _, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for tag, attrs, _ in page.tags:
        for name, value in attrs.items():
            if name in ("src", "href", "action") or "url(" in value:
                raise AssertionError(f"<{tag} {name}={value!r}> would fetch")
    policies = [a["content"] for t, a, _ in page.tags if a.get("http-equiv")]
    assert policies and "default-src 'none'" in policies[0]


def test_hostile_titles_and_alert_names_stay_text(tmp_path: Path) -> None:
    h = History.at(tmp_path / "state.db")
    h.incident(
        opened=NOW - HOUR,
        started=NOW - HOUR,
        resolved=NOW - HOUR + 5,
        reopen_count=1,
        flapping=True,
        title="<script>alert(1)</script>",
        alertname='"><img src=x onerror=alert(1)>',
    )
    page = render(tmp_path)
    assert not {t for t, _, _ in page.tags} & {"script", "img"}
    text = "".join(page.text)
    assert "<script>alert(1)</script>" in text
    assert '"><img src=x onerror=alert(1)>' in text


def test_an_empty_window_still_renders_both_charts(tmp_path: Path) -> None:
    History.at(tmp_path / "state.db")
    page = render(tmp_path, "720")
    assert [a.get("id") for t, a, _ in page.tags if t == "svg"] == [
        "chart-incidents",
        "chart-mttr",
    ]
    assert page.in_chart("chart-incidents", "rect", "bar") == []
    assert "—" in "".join(page.text)
    assert "No incidents opened in this window" in "".join(page.text)
