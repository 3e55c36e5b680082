from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0010_link_challenge_login_seq')]

    initial = False

    operations = [
        ops.CreateModel(
            name='HallSpecialHours',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='special_hours', on_delete=OnDelete.CASCADE)),
                ('day', fields.DateField()),
                ('periods', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('reason', fields.CharField(max_length=200)),
                ('created_by', fields.IntField(null=True)),
            ],
            options={'table': 'hall_special_hours', 'app': 'palmhall', 'unique_together': (('hall', 'day'),), 'pk_attr': 'id', 'table_description': "A hall's own hours for one date, in place of its weekly hours that day (shorter, or none at all)."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Appointment',
            name='cancel_reason',
            field=fields.CharField(null=True, max_length=200),
        ),
        ops.AddField(
            model_name='Appointment',
            name='cancelled_by',
            field=fields.CharField(null=True, max_length=8),
        ),
        ops.AlterModelOptions(
            name='HallClosure',
            options={'table': 'hall_closure', 'app': 'palmhall', 'unique_together': (('hall', 'day'),), 'pk_attr': 'id', 'table_description': "A hall's own closed day or part of a day, set by its admin (does not stop statutory clocks)."},
        ),
        ops.AddField(
            model_name='HallClosure',
            name='periods',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
