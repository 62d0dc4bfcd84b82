"""audit log: hash-chained records per organization, their HMAC anchors, the copy cursor of the network events

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("organization_id", sa.String(36), nullable=False),
        sa.Column("actor", sa.String(36), nullable=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("sandbox_id", sa.String(64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_records_ts", "audit_records", ["ts"])
    op.create_index("ix_audit_records_organization_id", "audit_records", ["organization_id"])
    op.create_index("ix_audit_records_sandbox_id", "audit_records", ["sandbox_id"])
    op.create_table(
        "audit_heads",
        sa.Column("organization_id", sa.String(36), primary_key=True),
        sa.Column("head_seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("start_prev", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_cursors",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_cursors")
    op.drop_table("audit_heads")
    op.drop_table("audit_records")
