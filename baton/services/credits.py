"""The installation's plans, as its settings give them."""

from __future__ import annotations

from baton.domain.credits import PlanBook, load_plans, load_prices
from baton.errors import InvalidInput
from baton.settings import Settings


def plan_book(settings: Settings) -> PlanBook:
    """The built-in plans with those of BATON_PLANS_FILE, BATON_DEFAULT_PLAN (which must be
    one of them), the model prices with those of BATON_MODEL_PRICES_FILE, and the
    installation's size ceilings (BATON_MAX_UPLOAD_BYTES, BATON_MAX_ROWS_PER_IMPORT)."""
    book = PlanBook(
        plans=load_plans(settings.plans_file),
        default_plan=settings.default_plan,
        prices=load_prices(settings.model_prices_file),
        upload_ceiling_bytes=settings.max_upload_bytes,
        rows_per_import_ceiling=settings.max_rows_per_import,
    )
    if settings.default_plan not in book.plans:
        raise InvalidInput(
            f"BATON_DEFAULT_PLAN={settings.default_plan!r} is not a plan; the plans are "
            f"{', '.join(book.plans)}"
        )
    return book
