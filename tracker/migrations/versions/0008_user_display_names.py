"""every user has a display name: screens name staff by it instead of the username, so a blank
one is filled from the username and the database refuses blank names from now on

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "length(trim(display_name)) > 0"


def upgrade() -> None:
    # Names were stored as typed (the admin form allowed an empty one): trim them, and give an
    # account without a name its username, which the administrator can replace
    # (`onboarding user rename`). Rows keep their version: nobody edited them.
    op.execute("UPDATE users SET display_name = trim(display_name)")
    op.execute("UPDATE users SET display_name = username WHERE display_name = ''")
    # On SQLite the table is copied with the constraint (batch mode); rows and ids stay.
    with op.batch_alter_table("users") as batch:
        batch.create_check_constraint(op.f("ck_users_display_name_given"), CHECK)


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_display_name_given"), type_="check")
