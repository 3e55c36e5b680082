from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0011_hall_setup')]

    initial = False

    operations = [
        ops.CreateModel(
            name='KioskCode',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code_hash', fields.CharField(unique=True, max_length=64)),
                ('resident', fields.ForeignKeyField('palmhall.Resident', source_field='resident_id', db_constraint=True, to_field='id', related_name='kiosk_codes', on_delete=OnDelete.CASCADE)),
                ('purpose', fields.CharField(max_length=32)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', null=True, db_constraint=True, to_field='id', related_name='kiosk_codes', on_delete=OnDelete.CASCADE)),
                ('family', fields.CharField(null=True, max_length=32)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('used_by', fields.CharField(null=True, max_length=32)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'kiosk_code', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': 'What a resident shows a kiosk (as a QR from the mini program) so the kiosk may act for them, for one'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Appointment',
            name='rescheduled_from',
            field=fields.OneToOneField('palmhall.Appointment', source_field='rescheduled_from_id', null=True, db_constraint=True, to_field='id', related_name='rescheduled_to', on_delete=OnDelete.RESTRICT),
        ),
    ]
