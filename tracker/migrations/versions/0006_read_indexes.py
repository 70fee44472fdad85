"""read indexes: the FIT@THGA enrolments of a year and a partner's queue page come from an
index instead of every step done in the year and every row of the queue

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 00:43:25.192794
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each new index starts with the columns of the one it replaces, so no query loses its index.
    op.create_index(
        "ix_handoffs_org_state_cover",
        "handoffs",
        ["organisation_id", "state", "step_id", "offered_at", "created_at"],
    )
    op.drop_index("ix_handoffs_org_state", table_name="handoffs")
    op.create_index("ix_steps_key_state_done", "steps", ["key", "state", "done_at", "case_id"])
    op.drop_index("ix_steps_key_state", table_name="steps")


def downgrade() -> None:
    op.create_index("ix_steps_key_state", "steps", ["key", "state"])
    op.drop_index("ix_steps_key_state_done", table_name="steps")
    op.create_index("ix_handoffs_org_state", "handoffs", ["organisation_id", "state"])
    op.drop_index("ix_handoffs_org_state_cover", table_name="handoffs")
