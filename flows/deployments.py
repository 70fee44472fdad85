"""The deployments and their schedules, kept apart from the flow code."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval
from prefect.types.entrypoint import EntrypointType

from flows.clocks import clock_sweep, partner_digest
from flows.delivery import deliver_outbox
from flows.fit import fit_daily
from flows.journey import advance_cases
from flows.privacy import retention
from flows.reports import issue_report
from tracker.config import get_settings
from tracker.db import is_sqlite_url


def deployments(*, for_work_pool: bool = False) -> list[RunnerDeployment]:
    """Every deployment with its schedule.

    ``for_work_pool``: for workers that run each flow run in a process of their own
    (`onboarding-flows deploy` / `worker`). Their entry points are module paths
    (``flows.clocks.clock_sweep``): the worker's process imports the installed package and
    needs no copy of the source. Delivery may then run in several workers at once, because
    claims skip what another worker holds (``FOR UPDATE SKIP LOCKED``) – on PostgreSQL; on
    SQLite one delivery runs at a time.
    """
    settings = get_settings()
    extra: dict[str, Any] = {}
    if for_work_pool:
        extra["entrypoint_type"] = EntrypointType.MODULE_PATH
    parallel_delivery = for_work_pool and not is_sqlite_url(settings.resolved_database_url)
    built = [
        advance_cases.to_deployment(
            **extra,
            name="advance-cases",
            description="Advance many cases in batches (imports, catch-up, migrations).",
            tags=["bulk"],
        ),
        clock_sweep.to_deployment(
            **extra,
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
            **extra,
            name="deliver-outbox",
            description="Send the messages waiting in the outbox.",
            schedules=[Interval(timedelta(seconds=settings.delivery_interval_seconds))],
            concurrency_limit=None if parallel_delivery else 1,
            tags=["delivery"],
        ),
        partner_digest.to_deployment(
            **extra,
            name="partner-digest",
            description="Each partner's daily queue digest.",
            schedules=[Cron(settings.digest_cron, timezone=settings.timezone)],
            tags=["digest"],
        ),
        fit_daily.to_deployment(
            **extra,
            name="fit-daily",
            description="FIT@THGA: offer reminders, feedback requests, permit and day-limit "
            "warnings.",
            schedules=[Cron(settings.fit_daily_cron, timezone=settings.timezone)],
            tags=["fit"],
        ),
        issue_report.to_deployment(
            **extra,
            name="monthly-report",
            description="Last month's outcomes report, kept for leadership (HTML, PDF, CSV).",
            schedules=[Cron(settings.monthly_report_cron, timezone=settings.timezone)],
            parameters={"kind": "monthly"},
            tags=["reports"],
        ),
        issue_report.to_deployment(
            **extra,
            name="fit-report",
            description="Last year's FIT@THGA programme report (HTML, PDF, CSV).",
            schedules=[Cron(settings.fit_report_cron, timezone=settings.timezone)],
            parameters={"kind": "fit"},
            tags=["reports"],
        ),
        retention.to_deployment(
            **extra,
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


def deploy_to_work_pool(pool: str) -> list[UUID]:
    """Create the process work pool if it is missing and (re)register every deployment in it.

    Safe to run again: deployments are updated by name, schedules replaced, and a running
    worker picks the changes up with its next poll.
    """
    import asyncio
    import contextlib

    from prefect import deploy
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    async def ensure_pool() -> None:
        async with get_client() as client:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=pool,
                        type=ProcessWorker.type,
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )

    asyncio.run(ensure_pool())
    # `deploy` is typed as "sync or coroutine" (it is sync when called from sync code).
    return cast(
        list[UUID],
        deploy(
            *deployments(for_work_pool=True),
            work_pool_name=pool,
            build=False,
            push=False,
            print_next_steps_message=False,
            ignore_warnings=True,
        ),
    )
