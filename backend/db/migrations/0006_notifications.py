from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from notifications.models import NotifyChannel, NotifyStatus, SubscriptionKind
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0005_payments')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Notification',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('event_id', fields.UUIDField()),
                ('topic', fields.CharField(max_length=100)),
                ('recipient', fields.CharField(max_length=40)),
                ('resident_id', fields.BigIntField(null=True, db_index=True)),
                ('hall_id', fields.IntField(null=True, db_index=True)),
                ('channel', fields.CharEnumField(description='WECHAT: wechat\nALIPAY: alipay\nSMS: sms\nINBOX: inbox\nSTAFF_INBOX: staff_inbox', enum_type=NotifyChannel, max_length=12)),
                ('template', fields.CharField(max_length=64)),
                ('required', fields.BooleanField(default=False)),
                ('status', fields.CharEnumField(default=NotifyStatus.CREATED, description='CREATED: created\nSENDING: sending\nSENT: sent\nDELIVERED: delivered\nTEMPORARY_FAILURE: temporary_failure\nPERMANENT_FAILURE: permanent_failure\nCANCELLED: cancelled', enum_type=NotifyStatus, max_length=20)),
                ('content', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('attempts', fields.IntField(default=0)),
                ('consent_taken', fields.BooleanField(default=False)),
                ('provider_answer', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('provider_id', fields.CharField(null=True, max_length=100)),
                ('reason', fields.CharField(null=True, max_length=64)),
                ('event_at_ms', fields.BigIntField()),
                ('hold_until_ms', fields.BigIntField(null=True)),
                ('sent_at_ms', fields.BigIntField(null=True)),
                ('read_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'notification', 'app': 'palmhall', 'unique_together': (('event_id', 'recipient', 'channel'),), 'indexes': [Index(fields=['status', 'updated_at']), Index(fields=['resident_id', 'channel', 'created_at'])], 'pk_attr': 'id', 'table_description': 'One message to one recipient on one channel, and everything that happened to it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Preference',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('resident_id', fields.BigIntField(db_index=True)),
                ('category', fields.CharField(max_length=32)),
                ('enabled', fields.BooleanField(default=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'notify_preference', 'app': 'palmhall', 'unique_together': (('resident_id', 'category'),), 'pk_attr': 'id', 'table_description': 'A category a resident switched off or on (absent means on).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Subscription',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('resident_id', fields.BigIntField(db_index=True)),
                ('channel', fields.CharEnumField(description='WECHAT: wechat\nALIPAY: alipay\nSMS: sms\nINBOX: inbox\nSTAFF_INBOX: staff_inbox', enum_type=NotifyChannel, max_length=12)),
                ('template_id', fields.CharField(max_length=128)),
                ('kind', fields.CharEnumField(description='ONE_TIME: one_time\nLONG_TERM: long_term', enum_type=SubscriptionKind, max_length=10)),
                ('remaining', fields.IntField(default=0)),
                ('last_answer', fields.CharField(max_length=10)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'notify_subscription', 'app': 'palmhall', 'unique_together': (('resident_id', 'channel', 'template_id'),), 'pk_attr': 'id', 'table_description': "A resident's consent to one provider template (what wx.requestSubscribeMessage returned)."},
            bases=['Model'],
        ),
    ]
