from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('palmhall', '0008_kiosk_enrollment')]

    initial = False

    operations = [
        ops.AddField(
            model_name='CorrectionNotice',
            name='note',
            field=fields.TextField(default='', unique=False),
        ),
        ops.AddIndex(
            model_name='Notification',
            index=Index(fields=['channel', 'provider_id']),
        ),
    ]
