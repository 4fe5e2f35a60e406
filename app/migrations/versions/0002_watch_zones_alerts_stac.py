"""watched AOIs, zones, alerts and their outbox, scenes from STAC items (issue 11)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team', sa.String(length=200), nullable=False),
    sa.Column('aoi_id', sa.String(length=32), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('secret', sa.String(length=256), nullable=False),
    sa.Column('rule', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['aoi_id'], ['aois.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_aoi_id'), ['aoi_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_team'), ['team'], unique=False)

    op.create_table('zones',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team', sa.String(length=200), nullable=False),
    sa.Column('aoi_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('geometry', sa.JSON(), nullable=False),
    sa.Column('area_m2', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['aoi_id'], ['aois.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('aoi_id', 'name', name='uq_zones_aoi_name')
    )
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_zones_aoi_id'), ['aoi_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_zones_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_zones_team'), ['team'], unique=False)

    op.create_table('alert_deliveries',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('alert_id', sa.String(length=32), nullable=False),
    sa.Column('analysis_id', sa.String(length=32), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.JSON(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('alert_id', 'analysis_id', name='uq_alert_deliveries_alert_analysis')
    )
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_deliveries_alert_id'), ['alert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_deliveries_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_deliveries_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_deliveries_status'), ['status'], unique=False)

    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('watched', sa.Boolean(), nullable=True))
        batch_op.create_index('ux_analyses_watched_pair', ['aoi_id', 'before_scene_id', 'after_scene_id', 'watched'], unique=True)

    with op.batch_alter_table('aois', schema=None) as batch_op:
        batch_op.add_column(sa.Column('watch', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('watched_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('baseline_scene_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_aois_watch'), ['watch'], unique=False)
        batch_op.create_foreign_key('fk_aois_baseline_scene_id_scenes', 'scenes', ['baseline_scene_id'], ['id'])

    with op.batch_alter_table('scenes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_url', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('scenes', schema=None) as batch_op:
        batch_op.drop_column('source_url')

    with op.batch_alter_table('aois', schema=None) as batch_op:
        batch_op.drop_constraint('fk_aois_baseline_scene_id_scenes', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_aois_watch'))
        batch_op.drop_column('baseline_scene_id')
        batch_op.drop_column('watched_since')
        batch_op.drop_column('watch')

    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_index('ux_analyses_watched_pair')
        batch_op.drop_column('watched')

    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_deliveries_status'))
        batch_op.drop_index(batch_op.f('ix_alert_deliveries_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_alert_deliveries_created_at'))
        batch_op.drop_index(batch_op.f('ix_alert_deliveries_alert_id'))

    op.drop_table('alert_deliveries')
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_zones_team'))
        batch_op.drop_index(batch_op.f('ix_zones_created_at'))
        batch_op.drop_index(batch_op.f('ix_zones_aoi_id'))

    op.drop_table('zones')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_team'))
        batch_op.drop_index(batch_op.f('ix_alerts_created_at'))
        batch_op.drop_index(batch_op.f('ix_alerts_aoi_id'))

    op.drop_table('alerts')
