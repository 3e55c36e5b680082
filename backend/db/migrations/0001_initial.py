from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from backend.jobs.models import OutboxStatus
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('seq', fields.BigIntField(unique=True)),
                ('actor_kind', fields.CharField(max_length=20)),
                ('actor_id', fields.CharField(null=True, max_length=64)),
                ('action', fields.CharField(max_length=80)),
                ('target_kind', fields.CharField(null=True, max_length=40)),
                ('target_id', fields.CharField(null=True, max_length=64)),
                ('details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('request_id', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('prev_hash', fields.CharField(max_length=64)),
                ('hash', fields.CharField(max_length=64)),
            ],
            options={'table': 'audit_entry', 'app': 'palmhall', 'indexes': [Index(fields=['target_kind', 'target_id']), Index(fields=['actor_kind', 'actor_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Meta',
            fields=[
                ('key', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=100)),
                ('value', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'palmhall_meta', 'app': 'palmhall', 'pk_attr': 'key'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OutboxEvent',
            fields=[
                ('seq', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('event_id', fields.UUIDField(unique=True)),
                ('topic', fields.CharField(max_length=100)),
                ('payload', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('ordering_key', fields.CharField(null=True, max_length=100)),
                ('status', fields.CharEnumField(default=OutboxStatus.PENDING, description='PENDING: pending\nRUNNING: running\nDONE: done\nDEAD: dead', enum_type=OutboxStatus, max_length=10)),
                ('attempts', fields.IntField(default=0)),
                ('max_attempts', fields.IntField(default=10)),
                ('available_at', fields.BigIntField()),
                ('lease_until', fields.BigIntField(null=True)),
                ('locked_by', fields.CharField(null=True, max_length=100)),
                ('done_handlers', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbox_event', 'app': 'palmhall', 'indexes': [Index(fields=['status', 'available_at']), Index(fields=['ordering_key', 'seq'])], 'pk_attr': 'seq'},
            bases=['Model'],
        ),
    ]
