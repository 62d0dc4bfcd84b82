"""sandbox addresses and egress policies; the event pipeline

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sandboxes") as b:
        b.add_column(sa.Column("ip", sa.String(15), nullable=True))
        b.add_column(sa.Column("network", sa.JSON(), nullable=False, server_default="{}"))
        b.create_unique_constraint("uq_sandbox_ip", ["ip"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("organization_id", sa.String(36), nullable=False),
        sa.Column("sandbox_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_events_sandbox_id", "events", ["sandbox_id"])
    op.create_index("ix_events_organization_id", "events", ["organization_id"])


def downgrade() -> None:
    op.drop_table("events")
    with op.batch_alter_table("sandboxes") as b:
        b.drop_constraint("uq_sandbox_ip", type_="unique")
        b.drop_column("network")
        b.drop_column("ip")
