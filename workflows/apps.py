from django.apps import AppConfig
from django.conf import settings


class WorkflowsConfig(AppConfig):
    name = "workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import graphs  # noqa: F401 - registers the graphs
        from .registry import import_graph_modules

        import_graph_modules(settings.WORKFLOW_GRAPH_MODULES)
