from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from backend.catalog.models import SubjectType
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0002_identity')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CalendarDay',
            fields=[
                ('day', fields.DateField(primary_key=True, unique=True, db_index=True)),
                ('is_workday', fields.BooleanField()),
                ('name', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'calendar_day', 'app': 'palmhall', 'pk_attr': 'day', 'table_description': 'An exception to "Monday–Friday work": an official holiday, or a weekend make-up workday (调休).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CalendarYear',
            fields=[
                ('year', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('source', fields.CharField(max_length=200)),
                ('loaded_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'calendar_year', 'app': 'palmhall', 'pk_attr': 'year', 'table_description': "A year's official arrangement loaded by an operator (`palmhall calendar load`): it takes"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Counter',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='counters', on_delete=OnDelete.CASCADE)),
                ('number', fields.IntField()),
                ('name', fields.CharField(max_length=64)),
                ('groups', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('active', fields.BooleanField(default=True)),
            ],
            options={'table': 'counter', 'app': 'palmhall', 'unique_together': (('hall', 'number'),), 'pk_attr': 'id', 'table_description': 'A service window (窗口) in a hall and the items it serves.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HallClosure',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='closures', on_delete=OnDelete.CASCADE)),
                ('day', fields.DateField()),
                ('reason', fields.CharField(max_length=200)),
                ('created_by', fields.IntField(null=True)),
            ],
            options={'table': 'hall_closure', 'app': 'palmhall', 'unique_together': (('hall', 'day'),), 'pk_attr': 'id', 'table_description': "A hall's own closed day, set by its admin (does not stop statutory clocks)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OpeningHours',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='opening_hours', on_delete=OnDelete.CASCADE)),
                ('weekday', fields.SmallIntField()),
                ('opens', fields.TimeField(auto_now=False, auto_now_add=False)),
                ('closes', fields.TimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'opening_hours', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'Hours a hall serves on a weekday (0 = Monday), in Asia/Shanghai local time.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ServiceItem',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=40)),
                ('name', fields.CharField(db_index=True, max_length=200)),
                ('department', fields.CharField(db_index=True, max_length=100)),
                ('subject_type', fields.CharEnumField(description='PERSON: person\nLEGAL_ENTITY: legal_entity', enum_type=SubjectType, max_length=12)),
                ('keywords', fields.CharField(default='', max_length=500)),
                ('queue_group', fields.CharField(default='A', max_length=1)),
                ('current_version', fields.IntField(default=1)),
                ('active', fields.BooleanField(default=True)),
                ('halls', fields.ManyToManyField('palmhall.Hall', unique=True, db_constraint=True, through='service_item_hall', forward_key='hall_id', backward_key='service_item_id', related_name='items', on_delete=OnDelete.CASCADE)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'service_item', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'One item of the catalog: one implementation code (实施编码), one standard.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ServiceItemVersion',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('item', fields.ForeignKeyField('palmhall.ServiceItem', source_field='item_id', db_constraint=True, to_field='id', related_name='versions', on_delete=OnDelete.CASCADE)),
                ('version', fields.IntField()),
                ('effective_from', fields.DateField()),
                ('name', fields.CharField(max_length=200)),
                ('department', fields.CharField(max_length=100)),
                ('subject_type', fields.CharEnumField(description='PERSON: person\nLEGAL_ENTITY: legal_entity', enum_type=SubjectType, max_length=12)),
                ('legal_basis', fields.TextField(default='', unique=False)),
                ('conditions', fields.TextField(default='', unique=False)),
                ('materials', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('statutory_days', fields.IntField()),
                ('promised_days', fields.IntField()),
                ('fees', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('channels', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('online_depth', fields.SmallIntField(default=1)),
                ('certificate_type', fields.CharField(null=True, max_length=64)),
                ('content_hash', fields.CharField(max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'service_item_version', 'app': 'palmhall', 'unique_together': (('item', 'version'),), 'pk_attr': 'id', 'table_description': 'The full guide (办事指南) as of one version; cases keep the version they started with.'},
            bases=['Model'],
        ),
    ]
