from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from backend.hall_sync.models import InboundOutcome
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0006_notifications')]

    initial = False

    operations = [
        ops.CreateModel(
            name='HallCaseLink',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case_no', fields.CharField(unique=True, max_length=32)),
                ('hall_case_id', fields.CharField(null=True, max_length=64)),
                ('last_seq_sent', fields.IntField(default=0)),
                ('last_seq_acked', fields.IntField(default=0)),
                ('hall_status', fields.CharField(null=True, max_length=24)),
                ('acked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'hall_case_link', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'One case as the main hall knows it: its id there and the push sequence numbers.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HallInboundEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall_event_id', fields.CharField(unique=True, max_length=64)),
                ('case_no', fields.CharField(db_index=True, max_length=32)),
                ('status', fields.CharField(max_length=24)),
                ('source', fields.CharField(max_length=16)),
                ('outcome', fields.CharEnumField(description='APPLIED: applied\nUNCHANGED: unchanged\nCONFLICT: conflict', enum_type=InboundOutcome, max_length=12)),
                ('from_status', fields.CharField(null=True, max_length=24)),
                ('to_status', fields.CharField(null=True, max_length=24)),
                ('echo_consumed', fields.BooleanField(default=False)),
                ('echo_event_id', fields.UUIDField(null=True)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'hall_inbound_event', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': "A status change the hall reported (callback or change feed), kept by the hall's event id."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HallPush',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('event_id', fields.UUIDField(unique=True)),
                ('subject', fields.CharField(db_index=True, max_length=48)),
                ('seq', fields.IntField()),
                ('kind', fields.CharField(max_length=32)),
                ('committed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('acked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'hall_push', 'app': 'palmhall', 'unique_together': (('subject', 'seq'),), 'pk_attr': 'id', 'table_description': 'One outbox event pushed to the hall, numbered once so a retry repeats the same sequence number.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HallSyncConflict',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case_no', fields.CharField(db_index=True, max_length=32)),
                ('hall_id', fields.IntField(null=True)),
                ('hall_event_id', fields.CharField(null=True, max_length=64)),
                ('source', fields.CharField(max_length=16)),
                ('hall_status', fields.CharField(max_length=24)),
                ('our_status', fields.CharField(max_length=24)),
                ('code', fields.CharField(max_length=48)),
                ('details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'hall_sync_conflict', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'A difference between the hall and us that the state machine would not settle: for staff to resolve.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HallSyncCursor',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=32)),
                ('cursor', fields.CharField(default='0', max_length=64)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'hall_sync_cursor', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': "Where reconciliation stopped reading the hall's change feed."},
            bases=['Model'],
        ),
    ]
