"""The LangGraph checkpointer's tables (PostgreSQL: in this database; SQLite: in the checkpoint
file beside it). Not atomic: the PostgreSQL saver creates some indexes concurrently."""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def create_checkpoint_tables(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    from workflows.checkpoints import checkpoint_setup

    checkpoint_setup(schema_editor.connection.alias)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("workflows", "0001_initial")]

    operations = [
        migrations.RunPython(create_checkpoint_tables, migrations.RunPython.noop, elidable=False)
    ]
