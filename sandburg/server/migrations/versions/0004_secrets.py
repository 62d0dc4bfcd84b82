"""secrets: encrypted, versioned values per organization; sandboxes keep references (env name -> secret name)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "organization_id",
            sa.String(36),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("organization_id", "name", name="uq_secret_org_name"),
    )
    op.create_index("ix_secrets_organization_id", "secrets", ["organization_id"])
    op.create_table(
        "secret_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "secret_id", sa.String(36), sa.ForeignKey("secrets.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("secret_id", "version", name="uq_secret_version"),
    )
    op.create_index("ix_secret_versions_secret_id", "secret_versions", ["secret_id"])
    # no table rebuild: SQLite adds a column with a constant default in place
    op.add_column("sandboxes", sa.Column("secrets", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("sandboxes") as b:
        b.drop_column("secrets")
    op.drop_table("secret_versions")
    op.drop_table("secrets")
