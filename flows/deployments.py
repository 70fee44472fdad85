"""The deployments and their schedules, kept apart from the flow code."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval

from flows.clocks import clock_sweep, partner_digest
from flows.delivery import deliver_outbox
from flows.fit import fit_daily
from flows.journey import advance_cases, advance_journey
from flows.privacy import retention
from flows.reports import issue_report
from tracker.config import get_settings


def deployments() -> list[RunnerDeployment]:
    settings = get_settings()
    built = [
        advance_journey.to_deployment(
            name="advance-journey",
            description="Reconcile one case after a change (started by the CLI and dashboard).",
            tags=["journey"],
        ),
        advance_cases.to_deployment(
            name="advance-cases",
            description="Advance many cases in batches (imports, catch-up, migrations).",
            tags=["bulk"],
        ),
        clock_sweep.to_deployment(
            name="clock-sweep",
            description="Reminders, escalations and catch-up of missed advances.",
            schedules=[
                Interval(
                    timedelta(minutes=settings.sweep_interval_minutes), timezone=settings.timezone
                )
            ],
            tags=["clocks"],
        ),
        deliver_outbox.to_deployment(
            name="deliver-outbox",
            description="Send the messages waiting in the outbox.",
            schedules=[Interval(timedelta(seconds=settings.delivery_interval_seconds))],
            concurrency_limit=1,
            tags=["delivery"],
        ),
        partner_digest.to_deployment(
            name="partner-digest",
            description="Each partner's daily queue digest.",
            schedules=[Cron(settings.digest_cron, timezone=settings.timezone)],
            tags=["digest"],
        ),
        fit_daily.to_deployment(
            name="fit-daily",
            description="FIT@THGA: offer reminders, feedback requests, permit and day-limit "
            "warnings.",
            schedules=[Cron(settings.fit_daily_cron, timezone=settings.timezone)],
            tags=["fit"],
        ),
        issue_report.to_deployment(
            name="monthly-report",
            description="Last month's outcomes report, kept for leadership (HTML, PDF, CSV).",
            schedules=[Cron(settings.monthly_report_cron, timezone=settings.timezone)],
            parameters={"kind": "monthly"},
            tags=["reports"],
        ),
        issue_report.to_deployment(
            name="fit-report",
            description="Last year's FIT@THGA programme report (HTML, PDF, CSV).",
            schedules=[Cron(settings.fit_report_cron, timezone=settings.timezone)],
            parameters={"kind": "fit"},
            tags=["reports"],
        ),
        retention.to_deployment(
            name="retention",
            description="Anonymise people whose cases ended more than the retention period "
            "ago (default 12 months); anonymous figures stay.",
            schedules=[Cron(settings.retention_cron, timezone=settings.timezone)],
            concurrency_limit=1,
            tags=["privacy"],
        ),
    ]
    # `to_deployment` is typed as "sync or coroutine"; called from sync code it is sync.
    return [cast(RunnerDeployment, d) for d in built]
