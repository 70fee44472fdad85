"""handoffs carry their step's due date, kept by the database, so a partner's queue page is
chosen from one index instead of looking up the step of every handoff in the queue

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 04:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every change to a case locks the case row first (tracker.records.get_case/lock_case),
# so a handoff being inserted and its step's due date being changed never run side by side: the
# copy taken on insert is the step's current due date, and a later change is copied on.
_PG = [
    """
    CREATE FUNCTION handoffs_step_due() RETURNS trigger AS $$
    BEGIN
        NEW.step_due_date := (SELECT due_date FROM steps WHERE id = NEW.step_id);
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER handoffs_step_due BEFORE INSERT OR UPDATE OF step_id ON handoffs "
    "FOR EACH ROW EXECUTE FUNCTION handoffs_step_due()",
    """
    CREATE FUNCTION steps_due_to_handoffs() RETURNS trigger AS $$
    BEGIN
        UPDATE handoffs SET step_due_date = NEW.due_date WHERE step_id = NEW.id;
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER steps_due_to_handoffs AFTER UPDATE OF due_date ON steps FOR EACH ROW "
    "WHEN (OLD.due_date IS DISTINCT FROM NEW.due_date) EXECUTE FUNCTION steps_due_to_handoffs()",
]
_SQLITE = [
    "CREATE TRIGGER handoffs_step_due AFTER INSERT ON handoffs BEGIN "
    "UPDATE handoffs SET step_due_date = (SELECT due_date FROM steps WHERE id = NEW.step_id) "
    "WHERE id = NEW.id; END",
    "CREATE TRIGGER handoffs_step_due_moved AFTER UPDATE OF step_id ON handoffs BEGIN "
    "UPDATE handoffs SET step_due_date = (SELECT due_date FROM steps WHERE id = NEW.step_id) "
    "WHERE id = NEW.id; END",
    "CREATE TRIGGER steps_due_to_handoffs AFTER UPDATE OF due_date ON steps "
    "WHEN OLD.due_date IS NOT NEW.due_date BEGIN "
    "UPDATE handoffs SET step_due_date = NEW.due_date WHERE step_id = NEW.id; END",
]


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("step_due_date", sa.Date(), nullable=True))
    op.execute(
        "UPDATE handoffs SET step_due_date = "
        "(SELECT due_date FROM steps WHERE steps.id = handoffs.step_id)"
    )
    for statement in _PG if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)
    # The new index starts with the columns of the one it replaces and keeps its others.
    op.create_index(
        "ix_handoffs_org_state_due",
        "handoffs",
        [
            "organisation_id",
            "state",
            "step_due_date",
            "offered_at",
            "id",
            "step_id",
            "case_id",
            "created_at",
        ],
    )
    op.drop_index("ix_handoffs_org_state_cover", table_name="handoffs")


def downgrade() -> None:
    op.create_index(
        "ix_handoffs_org_state_cover",
        "handoffs",
        ["organisation_id", "state", "step_id", "offered_at", "created_at"],
    )
    op.drop_index("ix_handoffs_org_state_due", table_name="handoffs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS steps_due_to_handoffs ON steps")
        op.execute("DROP FUNCTION IF EXISTS steps_due_to_handoffs()")
        op.execute("DROP TRIGGER IF EXISTS handoffs_step_due ON handoffs")
        op.execute("DROP FUNCTION IF EXISTS handoffs_step_due()")
    else:
        for name in ("steps_due_to_handoffs", "handoffs_step_due_moved", "handoffs_step_due"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("step_due_date")
