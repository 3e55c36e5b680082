from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from backend.cases.models import NoticeRequestState
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0012_reschedule_kiosk_code')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CorrectionRequest',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.ForeignKeyField('palmhall.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='notice_requests', on_delete=OnDelete.CASCADE)),
                ('hall_id', fields.IntField(db_index=True)),
                ('items', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('note', fields.TextField(default='', unique=False)),
                ('reason', fields.TextField(unique=False)),
                ('requested_by', fields.IntField()),
                ('requested_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('state', fields.CharEnumField(default=NoticeRequestState.PENDING, db_index=True, description='PENDING: pending\nAPPROVED: approved\nREFUSED: refused', enum_type=NoticeRequestState, max_length=10)),
                ('decided_by', fields.IntField(null=True)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('decision_reason', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'correction_request', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'A clerk asks for a further notice on a case whose notice was answered, and a hall admin approves or refuses.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='CaseHistory',
            name='internal',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='CorrectionNotice',
            name='amended_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='CorrectionNotice',
            name='announced_event_id',
            field=fields.UUIDField(null=True),
        ),
        ops.AddField(
            model_name='CorrectionNotice',
            name='repeat',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='CorrectionNotice',
            name='request',
            field=fields.ForeignKeyField('palmhall.CorrectionRequest', source_field='request_id', null=True, db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.RESTRICT),
        ),
    ]
