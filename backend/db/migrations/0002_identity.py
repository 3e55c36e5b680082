from tortoise import migrations
from tortoise.migrations import operations as ops
from backend.identity.models import Channel, StaffRole
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Hall',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=32)),
                ('name', fields.CharField(max_length=100)),
                ('region_code', fields.CharField(max_length=9)),
                ('address', fields.CharField(default='', max_length=200)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'hall', 'app': 'palmhall', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Kiosk',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device_id', fields.CharField(unique=True, max_length=32)),
                ('name', fields.CharField(max_length=64)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='kiosks', on_delete=OnDelete.RESTRICT)),
                ('secret_enc', fields.TextField(unique=False)),
                ('enabled', fields.BooleanField(default=True)),
                ('software_version', fields.CharField(null=True, max_length=64)),
                ('last_seen_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_ip', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'kiosk', 'app': 'palmhall', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Resident',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name_enc', fields.TextField(null=True, unique=False)),
                ('id_number_enc', fields.TextField(null=True, unique=False)),
                ('phone_enc', fields.TextField(null=True, unique=False)),
                ('id_number_hash', fields.CharField(null=True, unique=True, max_length=64)),
                ('phone_hash', fields.CharField(null=True, db_index=True, max_length=64)),
                ('verified_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('merged_into', fields.ForeignKeyField('palmhall.Resident', source_field='merged_into_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'resident', 'app': 'palmhall', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ChannelIdentity',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('resident', fields.ForeignKeyField('palmhall.Resident', source_field='resident_id', db_constraint=True, to_field='id', related_name='identities', on_delete=OnDelete.CASCADE)),
                ('channel', fields.CharEnumField(description='WECHAT: wechat\nALIPAY: alipay', enum_type=Channel, max_length=10)),
                ('app_id', fields.CharField(max_length=64)),
                ('subject', fields.CharField(max_length=128)),
                ('unionid', fields.CharField(null=True, max_length=128)),
                ('alipay_user_id', fields.CharField(null=True, max_length=64)),
                ('alipay_open_id', fields.CharField(null=True, max_length=128)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'channel_identity', 'app': 'palmhall', 'unique_together': (('channel', 'app_id', 'subject'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RefreshToken',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('family', fields.CharField(db_index=True, max_length=32)),
                ('resident', fields.ForeignKeyField('palmhall.Resident', source_field='resident_id', db_constraint=True, to_field='id', related_name='refresh_tokens', on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('channel', fields.CharEnumField(description='WECHAT: wechat\nALIPAY: alipay', enum_type=Channel, max_length=10)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'refresh_token', 'app': 'palmhall', 'pk_attr': 'id', 'table_description': "One use each. A family is one login's chain of refreshes, revoked whole on reuse."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Staff',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('username', fields.CharField(unique=True, max_length=64)),
                ('display_name', fields.CharField(max_length=64)),
                ('password_hash', fields.CharField(max_length=200)),
                ('must_change_password', fields.BooleanField(default=True)),
                ('active', fields.BooleanField(default=True)),
                ('failed_logins', fields.IntField(default=0)),
                ('locked_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('token_version', fields.IntField(default=1)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'staff', 'app': 'palmhall', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StaffGrant',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('staff', fields.ForeignKeyField('palmhall.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='grants', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharEnumField(description='CLERK: clerk\nHALL_ADMIN: hall_admin\nAUDITOR: auditor\nADMIN: admin', enum_type=StaffRole, max_length=12)),
                ('hall', fields.ForeignKeyField('palmhall.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='staff_grants', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'staff_grant', 'app': 'palmhall', 'unique_together': (('staff', 'role', 'hall'),), 'pk_attr': 'id', 'table_description': 'One role in one hall.'},
            bases=['Model'],
        ),
    ]
