"""volumes: encrypted persistent volumes per organization, and the volumes each sandbox mounts

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "organization_id",
            sa.String(36),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("size_mib", sa.Integer(), nullable=False),
        sa.Column("error_reason", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("organization_id", "name", name="uq_volume_org_name"),
    )
    op.create_index("ix_volumes_organization_id", "volumes", ["organization_id"])
    op.create_table(
        "sandbox_volumes",
        sa.Column(
            "sandbox_id", sa.String(36), sa.ForeignKey("sandboxes.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("mount_path", sa.String(1024), primary_key=True),
        # no ON DELETE: a volume that a sandbox mounts cannot be deleted
        sa.Column("volume_id", sa.String(36), sa.ForeignKey("volumes.id"), nullable=False),
        sa.Column("subpath", sa.String(1024), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    op.create_index("ix_sandbox_volumes_volume_id", "sandbox_volumes", ["volume_id"])


def downgrade() -> None:
    op.drop_table("sandbox_volumes")
    op.drop_table("volumes")
