from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0009_notice_note_receipt_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='LinkChallenge',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('handle', fields.CharField(unique=True, max_length=32)),
                ('requester', fields.ForeignKeyField('palmhall.Resident', source_field='requester_id', db_constraint=True, to_field='id', related_name='link_requests', on_delete=OnDelete.CASCADE)),
                ('holder', fields.ForeignKeyField('palmhall.Resident', source_field='holder_id', db_constraint=True, to_field='id', related_name='link_challenges', on_delete=OnDelete.CASCADE)),
                ('code_hash', fields.CharField(max_length=64)),
                ('attempts', fields.IntField(default=0)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'link_challenge', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': "Proof asked of whoever wants to join a second platform's login to an existing resident: a one-time"},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Staff',
            name='login_seq',
            field=fields.BigIntField(default=0),
        ),
    ]
