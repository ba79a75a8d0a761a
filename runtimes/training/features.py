"""The lead model's feature schema, as the ``[[features]]`` tables written into ``config.toml``."""

from __future__ import annotations

from typing import Any

CHANNELS = ("referral", "web", "event", "seminar", "partner", "cold_list")

# Missing money and recency values are encoded as -1, below every valid value: the model then
# learns "unknown" / "never contacted" as a bin of its own instead of pretending it is typical.
_UNKNOWN = -1.0


def feature_tables() -> list[dict[str, Any]]:
    """A fresh copy of the feature tables, in tensor column order."""
    return [
        _number("age", "Age", 18.0, 100.0, 45.0, "{:.0f}"),
        _number(
            "household_income",
            "Household income",
            0.0,
            1e8,
            _UNKNOWN,
            "money",
        ),
        _number(
            "investable_assets",
            "Investable assets",
            0.0,
            1e10,
            _UNKNOWN,
            "money",
        ),
        _boolean("retiring_within_5y", "Retiring within 5 years", "Not retiring within 5 years"),
        _boolean("job_change", "Recent job change", "No recent job change"),
        _boolean("inheritance", "Recent inheritance", "No recent inheritance"),
        _boolean("new_child", "New child in the family", "No new child"),
        _boolean("home_sale", "Recent home sale", "No recent home sale"),
        _number(
            "email_opens_90d",
            "Email opens",
            0.0,
            1000.0,
            0.0,
            "{:.0f}",
            template="Opened {value} emails in 90 days",
            template_one="Opened 1 email in 90 days",
            label_missing="No email opens recorded",
        ),
        _number(
            "site_visits_30d",
            "Site visits",
            0.0,
            1000.0,
            0.0,
            "{:.0f}",
            template="{value} site visits in 30 days",
            template_one="1 site visit in 30 days",
            label_missing="No site visits recorded",
        ),
        _boolean("webinar_attended", "Attended a webinar", "No webinar attended"),
        _boolean("calculator_used", "Used the retirement calculator", "Calculator not used"),
        _number(
            "days_since_last_touch",
            "Last touch",
            0.0,
            3650.0,
            _UNKNOWN,
            "{:.0f}",
            template="Last touch {value} days ago",
            template_one="Last touch 1 day ago",
            label_missing="Never contacted",
        ),
        _boolean("meeting_booked", "Meeting booked", "No meeting booked"),
        {
            "name": "channel",
            "type": "category",
            "label": "Acquisition channel",
            "categories": list(CHANNELS),
            "on_unknown": "error",
            "required": True,
            "template": "Came via {value}",
        },
        _number(
            "existing_accounts",
            "Existing accounts",
            0.0,
            50.0,
            0.0,
            "{:.0f}",
            template="Existing accounts: {value}",
            label_missing="No existing accounts recorded",
        ),
    ]


def _number(
    name: str,
    label: str,
    minimum: float,
    maximum: float,
    default: float,
    value_format: str,
    *,
    template: str | None = None,
    template_one: str | None = None,
    label_missing: str | None = None,
) -> dict[str, Any]:
    table: dict[str, Any] = {
        "name": name,
        "type": "number",
        "label": label,
        "min": minimum,
        "max": maximum,
        "required": False,
        "default": default,
        "format": value_format,
    }
    if template is not None:
        table["template"] = template
    if template_one is not None:
        table["template_one"] = template_one
    if label_missing is not None:
        table["label_missing"] = label_missing
    return table


def _boolean(name: str, label_true: str, label_false: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "boolean",
        "label": label_true,
        "label_true": label_true,
        "label_false": label_false,
        "label_missing": f"{label_true}: not recorded",
        "required": False,
        "default": False,
    }
