from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from payments.models import EntryKind, OrderState, PayChannel, PayScene, RefundState
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0004_cases')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PaymentOrder',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('out_trade_no', fields.CharField(unique=True, max_length=32)),
                ('case_no', fields.CharField(db_index=True, max_length=32)),
                ('hall_id', fields.IntField(db_index=True)),
                ('resident_id', fields.BigIntField(null=True, db_index=True)),
                ('kiosk_id', fields.CharField(null=True, max_length=32)),
                ('channel', fields.CharEnumField(description='WECHAT: wechat\nALIPAY: alipay', enum_type=PayChannel, max_length=10)),
                ('scene', fields.CharEnumField(description='MINI_PROGRAM: mini_program\nKIOSK_QR: kiosk_qr', enum_type=PayScene, max_length=16)),
                ('description', fields.CharField(max_length=127)),
                ('amount_fen', fields.IntField()),
                ('fees', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('state', fields.CharEnumField(default=OrderState.CREATED, description='CREATED: created\nPAYING: paying\nPAID: paid\nCLOSED: closed\nREFUNDING: refunding\nREFUNDED: refunded\nPARTIALLY_REFUNDED: partially_refunded', enum_type=OrderState, max_length=20)),
                ('case_slot', fields.CharField(null=True, unique=True, max_length=32)),
                ('idempotency_key', fields.CharField(null=True, max_length=100)),
                ('payer', fields.CharField(null=True, max_length=128)),
                ('platform_trade_no', fields.CharField(null=True, max_length=64)),
                ('prepay', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('paid_fen', fields.IntField(default=0)),
                ('refunded_fen', fields.IntField(default=0)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('paid_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'payment_order', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': "One attempt to collect a case's fees through one channel, in integer fen."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LedgerEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('palmhall.PaymentOrder', source_field='order_id', db_constraint=True, to_field='id', related_name='entries', on_delete=OnDelete.RESTRICT)),
                ('case_no', fields.CharField(db_index=True, max_length=32)),
                ('channel', fields.CharEnumField(description='WECHAT: wechat\nALIPAY: alipay', enum_type=PayChannel, max_length=10)),
                ('kind', fields.CharEnumField(description='PAYMENT: payment\nREFUND: refund', enum_type=EntryKind, max_length=10)),
                ('amount_fen', fields.IntField()),
                ('ref', fields.CharField(unique=True, max_length=100)),
                ('platform_trade_no', fields.CharField(null=True, max_length=64)),
                ('business_day', fields.DateField(db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'payment_ledger_entry', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'Append-only money movements: a payment is positive, a refund negative, never updated or deleted.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PaymentStateChange',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('palmhall.PaymentOrder', source_field='order_id', db_constraint=True, to_field='id', related_name='history', on_delete=OnDelete.CASCADE)),
                ('from_state', fields.CharField(null=True, max_length=20)),
                ('to_state', fields.CharField(max_length=20)),
                ('actor', fields.CharField(max_length=64)),
                ('reason', fields.CharField(default='', max_length=255)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'payment_state_change', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'Every state change of an order, with who or what caused it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ReconciliationReport',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('day', fields.DateField(unique=True)),
                ('ok', fields.BooleanField()),
                ('differences', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('summary', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'payment_reconciliation_report', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': "The outcome of comparing one day's platform bills with our ledger."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Refund',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('palmhall.PaymentOrder', source_field='order_id', db_constraint=True, to_field='id', related_name='refunds', on_delete=OnDelete.CASCADE)),
                ('out_refund_no', fields.CharField(unique=True, max_length=64)),
                ('amount_fen', fields.IntField()),
                ('reason', fields.CharField(max_length=80)),
                ('state', fields.CharEnumField(default=RefundState.PROCESSING, description='PROCESSING: processing\nSUCCESS: success\nFAILED: failed', enum_type=RefundState, max_length=12)),
                ('automatic', fields.BooleanField(default=False)),
                ('requested_by', fields.CharField(max_length=64)),
                ('idempotency_key', fields.CharField(null=True, unique=True, max_length=100)),
                ('platform_refund_id', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'payment_refund', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'A refund asked of the platform: out_refund_no (WeChat) or out_request_no (Alipay) is ours.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SuspectNotification',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('channel', fields.CharEnumField(description='WECHAT: wechat\nALIPAY: alipay', enum_type=PayChannel, max_length=10)),
                ('out_trade_no', fields.CharField(null=True, max_length=64)),
                ('problem', fields.CharField(max_length=64)),
                ('fingerprint', fields.CharField(unique=True, max_length=64)),
                ('content', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('reviewed', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'payment_suspect_notification', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'A verified notification whose content does not match our order: kept for review, never acted on.'},
            bases=['Model'],
        ),
    ]
