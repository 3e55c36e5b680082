from tortoise import migrations
from tortoise.migrations import operations as ops
from backend.booking.models import AppointmentStatus, TicketStatus
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0003_catalog')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BookingBar',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('person_hash', fields.CharField(db_index=True, max_length=64)),
                ('reason', fields.CharField(max_length=200)),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'booking_bar', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'Booking barred for an ID number after repeated no-shows.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='BookingRule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='booking_rules', on_delete=OnDelete.CASCADE)),
                ('item', fields.ForeignKeyField('palmhall.ServiceItem', source_field='item_id', null=True, db_constraint=True, to_field='id', related_name='booking_rules', on_delete=OnDelete.CASCADE)),
                ('slot_minutes', fields.IntField(default=30)),
                ('seats_per_slot', fields.IntField(default=4)),
                ('horizon_days', fields.IntField(default=14)),
                ('min_notice_minutes', fields.IntField(default=60)),
                ('cancel_cutoff_minutes', fields.IntField(default=120)),
                ('max_active_per_person', fields.IntField(default=3)),
                ('release_cooldown_minutes', fields.IntField(default=30)),
                ('checkin_early_minutes', fields.IntField(default=30)),
                ('checkin_late_minutes', fields.IntField(default=15)),
                ('walkin_daily_quota', fields.IntField(default=100)),
            ],
            options={'table': 'booking_rule', 'app': 'palmhall', 'unique_together': (('hall', 'item'),), 'pk_attr': 'id', 'table_description': "How a hall books an item (item null: the hall's default for every item)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Slot',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='slots', on_delete=OnDelete.CASCADE)),
                ('item', fields.ForeignKeyField('palmhall.ServiceItem', source_field='item_id', db_constraint=True, to_field='id', related_name='slots', on_delete=OnDelete.CASCADE)),
                ('day', fields.DateField()),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('capacity', fields.IntField()),
                ('booked', fields.IntField(default=0)),
            ],
            options={'table': 'slot', 'app': 'palmhall', 'unique_together': (('hall', 'item', 'starts_at'),), 'pk_attr': 'id', 'table_description': 'One bookable time of one item in one hall; `booked` can never pass `capacity`.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Appointment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('resident_id', fields.BigIntField(db_index=True)),
                ('person_hash', fields.CharField(db_index=True, max_length=64)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='appointments', on_delete=OnDelete.RESTRICT)),
                ('item', fields.ForeignKeyField('palmhall.ServiceItem', source_field='item_id', db_constraint=True, to_field='id', related_name='appointments', on_delete=OnDelete.RESTRICT)),
                ('slot', fields.ForeignKeyField('palmhall.Slot', source_field='slot_id', db_constraint=True, to_field='id', related_name='appointments', on_delete=OnDelete.RESTRICT)),
                ('day', fields.DateField()),
                ('status', fields.CharEnumField(default=AppointmentStatus.BOOKED, description='BOOKED: booked\nCANCELLED: cancelled\nCHECKED_IN: checked_in\nNO_SHOW: no_show\nCOMPLETED: completed', enum_type=AppointmentStatus, max_length=12)),
                ('idempotency_key', fields.CharField(max_length=100)),
                ('request_hash', fields.CharField(max_length=64)),
                ('cancelled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('seat_released', fields.BooleanField(default=False)),
                ('checked_in_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('no_show_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('reminded', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'appointment', 'app': 'palmhall', 'unique_together': (('resident_id', 'idempotency_key'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='QueueTicket',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.CASCADE)),
                ('day', fields.DateField()),
                ('group', fields.CharField(max_length=1)),
                ('number', fields.IntField()),
                ('code', fields.CharField(max_length=8)),
                ('item', fields.ForeignKeyField('palmhall.ServiceItem', source_field='item_id', null=True, db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.SET_NULL)),
                ('appointment', fields.ForeignKeyField('palmhall.Appointment', source_field='appointment_id', null=True, db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.SET_NULL)),
                ('priority', fields.SmallIntField(default=1)),
                ('status', fields.CharEnumField(default=TicketStatus.WAITING, description='WAITING: waiting\nCALLED: called\nSERVING: serving\nDONE: done\nMISSED: missed', enum_type=TicketStatus, max_length=8)),
                ('call_count', fields.SmallIntField(default=0)),
                ('counter', fields.ForeignKeyField('palmhall.Counter', source_field='counter_id', null=True, db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.SET_NULL)),
                ('issued_by', fields.CharField(max_length=40)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('called_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'queue_ticket', 'app': 'palmhall', 'unique_together': (('hall', 'day', 'group', 'number'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
