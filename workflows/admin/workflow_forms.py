"""The workflow admin's forms: editing a workflow, and the input of a run to trigger.

Both validate with what the services validate (the graph's Pydantic schemas, ``workflow_check``)
and turn each coded ``ValidationFailed`` into errors on the fields it names, so a bad value is
a form error, never an error page.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.forms.fields import InvalidJSONInput

from core.errors import AppError, NotFound, ValidationFailed
from integrations.models import Connection, ConnectionStatus

from ..models import Workflow
from ..registry import GraphSpec, graph_spec
from ..services import workflow_check

EDITABLE = (
    "name",
    "enabled",
    "config",
    "connection",
    "schedule_seconds",
    "trigger",
    "trigger_object_type",
)
# Where a service's ``details.fields`` key lives on the forms.
FORM_FIELD_OF = {"connection_id": "connection"}
TOKEN_FIELDS = ("access_token", "refresh_token")


def spec_or_none(key: str) -> GraphSpec | None:
    """The registered graph, or ``None`` for a workflow whose graph was removed."""
    try:
        return graph_spec(key)
    except NotFound:
        return None


def schema_errors(exc: ValidationFailed, where: str) -> list[str]:
    """The registry's per-field schema errors (``config.mql_score: ...``) as form messages."""
    fields = exc.details.get("fields")
    if not isinstance(fields, dict) or not fields:
        return [exc.message]
    messages = []
    for key, problem in fields.items():
        name = str(key).removeprefix(where).lstrip(".")
        messages.append(f"{name}: {problem}" if name else str(problem))
    return messages


def add_service_error(form: forms.BaseForm, exc: AppError, where: str = "") -> None:
    """Put a service's refusal on the fields its ``details.fields`` names (keys under
    ``where`` are schema errors of that JSON field), or on the form as a whole."""
    fields = exc.details.get("fields") if isinstance(exc, ValidationFailed) else None
    if not isinstance(fields, dict) or not fields:
        form.add_error(None, exc.message)
        return
    if where and any(str(k).split(".")[0] == where for k in fields):
        form.add_error(where, schema_errors(exc, where))  # type: ignore[arg-type]
        return
    targets = {FORM_FIELD_OF.get(str(k), str(k)) for k in fields}
    for name in sorted(targets):
        form.add_error(name if name in form.fields else None, exc.message)


class ObjectJSONField(forms.JSONField):
    """A JSON object in a textarea, shown indented; empty means ``{}``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "widget", forms.Textarea(attrs={"rows": 12, "cols": 80, "class": "vLargeTextField"})
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value if value is not None else {}, indent=2, ensure_ascii=False)

    def clean(self, value: Any) -> dict[str, Any]:
        data = super().clean(value)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise forms.ValidationError('Enter a JSON object, like {"name": "value"}.')
        return data


def _connections_of(organization_id: Any) -> Any:
    return Connection.objects.filter(organization_id=organization_id).defer(*TOKEN_FIELDS)


class WorkflowForm(forms.ModelForm[Workflow]):
    config = ObjectJSONField(help_text="Checked against the graph's config schema (below).")

    class Meta:
        model = Workflow
        fields = EDITABLE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        workflow = self.instance
        self.spec = spec_or_none(workflow.graph)
        if "connection" in self.fields:
            connection = self.fields["connection"]
            assert isinstance(connection, forms.ModelChoiceField)  # noqa: S101 - narrows the type
            connection.queryset = _connections_of(workflow.organization_id)
        if "trigger_object_type" in self.fields and self.spec is not None:
            allowed = list(self.spec.trigger_object_types)
            if workflow.trigger_object_type and workflow.trigger_object_type not in allowed:
                allowed.append(workflow.trigger_object_type)
            self.fields["trigger_object_type"].widget = forms.Select(
                choices=[("", "-"), *((t, t) for t in allowed)]
            )

    def clean_config(self) -> dict[str, Any]:
        value: dict[str, Any] = self.cleaned_data["config"]
        if self.spec is None:
            return value
        try:
            self.spec.validate_config(value)
        except ValidationFailed as exc:
            raise forms.ValidationError(schema_errors(exc, "config")) from exc
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        workflow = self.instance
        if self.spec is None:
            self.add_error(None, f"The graph {workflow.graph!r} is not registered any more.")
            return data

        def chosen(name: str) -> Any:
            return data[name] if name in data else getattr(workflow, name)

        if "connection" in data:
            connection_id = data["connection"].pk if data["connection"] is not None else None
        else:
            connection_id = workflow.connection_id
        candidate = Workflow(
            pk=workflow.pk,
            organization_id=workflow.organization_id,
            key=workflow.key,
            graph=workflow.graph,
            config=chosen("config"),
            connection_id=connection_id,
            schedule_seconds=chosen("schedule_seconds"),
            trigger=chosen("trigger"),
            trigger_object_type=chosen("trigger_object_type"),
        )
        try:
            workflow_check(candidate)
        except AppError as exc:
            add_service_error(self, exc, "config")
        return data


def input_skeleton(spec: GraphSpec | None) -> dict[str, Any]:
    """The form's starting input: the graph's required fields, empty."""
    if spec is None:
        return {}
    return {name: "" for name, f in spec.input_schema.model_fields.items() if f.is_required()}


class TriggerRunForm(forms.Form):
    input = ObjectJSONField(help_text="The run's input, checked against the graph's input schema.")
    connection = forms.ModelChoiceField(
        queryset=Connection.objects.none(),
        required=False,
        empty_label="The workflow's connection",
        help_text="The CRM to run on (active connections of the organisation).",
    )

    def __init__(self, data: Any, *, workflow: Workflow, spec: GraphSpec | None) -> None:
        super().__init__(data, initial={"input": input_skeleton(spec)})
        self.spec = spec
        connection = self.fields["connection"]
        assert isinstance(connection, forms.ModelChoiceField)  # noqa: S101 - narrows the type
        connection.queryset = _connections_of(workflow.organization_id).filter(
            status=ConnectionStatus.ACTIVE
        )

    def clean_input(self) -> dict[str, Any]:
        value: dict[str, Any] = self.cleaned_data["input"]
        if self.spec is None:
            raise forms.ValidationError("This workflow's graph is not registered any more.")
        try:
            return self.spec.validate_input(value).model_dump(mode="json")
        except ValidationFailed as exc:
            raise forms.ValidationError(schema_errors(exc, "input")) from exc

    def add_service_error(self, exc: AppError) -> None:
        add_service_error(self, exc, "input")
