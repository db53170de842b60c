"""The usage page: the project's vendor credits and runs per day over the last 30 days, as
bar charts drawn on the server (inline SVG) over the API's usage report, with the numbers
in a table too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request
from fastapi.responses import Response

from api.console.core import ViewerConsole, console_router, render
from api.deps import SessionDep
from api.routes import usage as usage_routes
from baton.db.tables import utcnow
from baton.domain.usage import GroupBy, UsageRow

router = console_router()

DAYS = 30
BAR_WIDTH, BAR_GAP, CHART_HEIGHT = 16, 4, 120


@dataclass(frozen=True)
class Bar:
    day: str
    value: float
    x: int
    height: int

    @property
    def y(self) -> int:
        return CHART_HEIGHT - self.height


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    top: float

    @property
    def width(self) -> int:
        return len(self.bars) * (BAR_WIDTH + BAR_GAP)


def chart(title: str, days: list[str], values: dict[str, float]) -> Chart:
    top = max((values.get(day, 0.0) for day in days), default=0.0)
    bars = [
        Bar(
            day=day,
            value=values.get(day, 0.0),
            x=index * (BAR_WIDTH + BAR_GAP),
            # A day with any use gets a visible bar, however small next to the top one.
            height=max(1, round(values[day] / top * CHART_HEIGHT)) if values.get(day) else 0,
        )
        for index, day in enumerate(days)
    ]
    return Chart(title=title, bars=bars, top=top)


@router.get("/usage")
async def usage_page(request: Request, console: ViewerConsole, session: SessionDep) -> Response:
    end = utcnow()
    start = (end - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    report = await usage_routes.get_usage(
        project=console.project,
        session=session,
        _=console.principal,
        query=usage_routes.UsageQuery(start=start, end=end, group_by=GroupBy.day),
    )
    days = [(start + timedelta(days=n)).date().isoformat() for n in range(DAYS)]
    by_day: dict[str, UsageRow] = {row.group: row for row in report.rows if row.group}
    return render(
        request,
        "usage.html",
        console.state,
        console=console,
        report=report,
        days=days,
        by_day=by_day,
        charts=[
            chart(
                "Vendor credits per day",
                days,
                {day: row.vendor_credits for day, row in by_day.items()},
            ),
            chart("Runs per day", days, {day: float(row.runs) for day, row in by_day.items()}),
        ],
        bar_width=BAR_WIDTH,
        chart_height=CHART_HEIGHT,
    )
