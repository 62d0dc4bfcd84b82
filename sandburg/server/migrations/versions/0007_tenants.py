"""tenants: roles and scopes of API keys, quotas of organizations

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_QUOTAS = ("max_sandboxes", "max_cpu", "max_memory_mib", "max_disk_mib", "max_snapshots")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as t:
        # keys made before roles existed were the bootstrap's: admins
        t.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="admin"))
        t.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
        t.add_column(sa.Column("created_by", sa.String(36), nullable=True))
    with op.batch_alter_table("organizations") as t:
        for name in _QUOTAS:
            t.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organizations") as t:
        for name in _QUOTAS:
            t.drop_column(name)
    with op.batch_alter_table("api_keys") as t:
        for name in ("created_by", "scopes", "role"):
            t.drop_column(name)
