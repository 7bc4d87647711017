"""A run's server-sent events: streamed by uvicorn while a worker thread runs the graph (a step
event arrives while the run is still held inside the next node), resumed with
``Last-Event-ID``, kept alive, stopped when the client leaves, scoped to the organisation."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.db import connection, connections
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import Organization
from integrations.models import Connection
from tests.conftest import Api, LiveServer, assert_envelope_error, new_key
from workflows import events
from workflows.events import KEEPALIVE, RunEventCursor, parse_last_event_id, run_events
from workflows.models import (
    Approval,
    RunStatus,
    RunStep,
    StepStatus,
    Workflow,
    WorkflowRun,
)
from workflows.services import run_cancel, run_start

from .conftest import drive, make_lead

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="tester")
LEAD = "lead_qualification"


@dataclass
class Event:
    event: str
    data: Any
    id: int | None = None
    at: float = field(default_factory=time.monotonic)


def parse_sse(lines: Iterable[str]) -> Iterator[Event | str]:
    """Events (and comments, as their text) from an SSE body, one at a time."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields or "data" in fields:
                raw_id = fields.get("id")
                yield Event(
                    event=fields.get("event", "message"),
                    data=orjson.loads(fields["data"]) if "data" in fields else None,
                    id=int(raw_id) if raw_id is not None else None,
                )
            fields = {}
        elif line.startswith(":"):
            yield line
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def parse_chunks(chunks: list[str]) -> list[Event | str]:
    return list(parse_sse("".join(chunks).split("\n")))


def only(kind: str, items: Iterable[Event | str]) -> list[Event]:
    return [e for e in items if isinstance(e, Event) and e.event == kind]


class Background(threading.Thread):
    """Runs ``target`` in a thread with its own database connection; keeps its error."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.target()
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            connections.close_all()

    def finish(self, timeout: float = 60) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error


class Gate:
    """Holds the runner when ``node`` starts (its step row already written), until released."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.reached = threading.Event()
        self.released = threading.Event()
        self.timed_out = False

    async def on_event(self, payload: dict[str, Any]) -> None:
        if "input" in payload and payload.get("name") == self.node and not self.reached.is_set():
            self.reached.set()
            if not await asyncio.to_thread(self.released.wait, 30):
                self.timed_out = True


def no_note(workflow: Workflow) -> None:
    workflow.config = {**workflow.config, "add_note": False}
    workflow.save(update_fields=["config"])


# --- live: uvicorn streams while a worker thread runs the graph ---------------------------------


def test_steps_stream_while_the_run_executes_then_resume_after_the_end(
    asgi_server: LiveServer,
    org: Organization,
    hubspot: Connection,
    workflows: dict[str, Workflow],
) -> None:
    no_note(workflows[LEAD])
    lead = make_lead(hubspot)
    headers = {"Authorization": f"Bearer {new_key(org)}"}
    gate = Gate("enrich")
    received: list[Event | str] = []
    held: dict[str, Any] = {}
    with httpx.Client(base_url=asgi_server.url, timeout=20, headers=headers) as http:
        started = http.post(
            f"/api/v1/workflows/{LEAD}/runs", json={"input": {"contact_id": lead.contact_id}}
        )
        assert started.status_code == 202, started.text + asgi_server.tail()
        run_id = uuid.UUID(started.json()["data"]["id"])
        worker = Background(lambda: drive(run_id, on_event=gate.on_event))
        with http.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
            assert stream.status_code == 200, asgi_server.tail()
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-cache"
            assert stream.headers["x-request-id"]
            worker.start()
            deadline = time.monotonic() + 90
            for item in parse_sse(stream.iter_lines()):
                assert time.monotonic() < deadline, f"no end in 90 s: {received}"
                received.append(item)
                if not isinstance(item, Event):
                    continue
                if item.event == "step" and item.data["node"] == "enrich" and not held:
                    # The runner is held inside "enrich": nothing after it has happened yet.
                    assert gate.reached.is_set()
                    run = WorkflowRun.objects.get(pk=run_id)
                    held["status"] = run.status
                    held["finished_at"] = run.finished_at
                    held["later"] = list(
                        RunStep.objects.filter(run_id=run_id)
                        .exclude(node__in=("load", "enrich"))
                        .values_list("node", flat=True)
                    )
                    held["step"] = item
                    gate.released.set()
                if item.event == "status" and item.data["status"] == "waiting_approval":
                    worker.finish()
                    approval_id = item.data["approval_id"]
                    decided = http.post(f"/api/v1/approvals/{approval_id}/approve", json={})
                    assert decided.status_code == 200, decided.text
                    worker = Background(lambda: drive(run_id))
                    worker.start()
                if item.event == "end":
                    break
        worker.finish()
    assert not gate.timed_out, "the step event never reached the client while the run was held"

    # The first step events arrived while the run was still inside "enrich".
    assert held["status"] == RunStatus.RUNNING
    assert held["finished_at"] is None
    assert held["later"] == []
    assert held["step"].data["status"] == "running"
    run = WorkflowRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    steps = only("step", received)
    ids = [e.id or 0 for e in steps]
    assert all(e.id for e in steps)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # Every step's final state was sent, in the order the steps started, matching the rows.
    rows = list(RunStep.objects.filter(run_id=run_id).order_by("pk"))
    final = [(e.data["id"], e.data["node"], e.data["status"]) for e in steps if (e.id or 0) % 2]
    assert final == [(s.pk, s.node, s.status) for s in rows]
    assert [s.node for s in rows][:5] == ["load", "enrich", "score", "propose", "approval"]
    assert rows[-1].node == "finish"
    enrich = [e for e in steps if e.data["node"] == "enrich"]
    assert [e.data["status"] for e in enrich] == ["running", "succeeded"]
    assert enrich[0].id == rows[1].pk * 2
    assert enrich[1].id == rows[1].pk * 2 + 1
    assert all(e.data["run_id"] == str(run_id) for e in steps)
    # Status changes, in order; waiting_approval names the approval.
    statuses = [e.data["status"] for e in only("status", received)]
    assert statuses[0] in ("queued", "running")
    assert is_subsequence(["running", "waiting_approval", "running", "succeeded"], statuses)
    waiting = next(e for e in only("status", received) if e.data["status"] == "waiting_approval")
    approval = Approval.objects.get(run_id=run_id)
    assert waiting.data["approval_id"] == str(approval.pk)
    assert waiting.data["approval"]["diff"][0]["changes"][0]["field"] == "lifecycle_stage"
    # The end closes the stream.
    end = only("end", received)
    assert len(end) == 1
    assert received[-1] is end[0]
    assert end[0].data["status"] == "succeeded"
    assert end[0].data["output"]["outcome"] == "written"

    # Reconnecting with the enrich step's first id: only what came after, then the end.
    after = enrich[0].id
    assert after is not None
    with httpx.Client(base_url=asgi_server.url, timeout=20, headers=headers) as http:
        resumed = list(
            parse_sse(
                http.get(
                    f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(after)}
                ).text.split("\n")
            )
        )
    again = only("step", resumed)
    assert [(e.data["id"], e.data["status"]) for e in again] == [
        (s.pk, s.status) for s in rows if s.pk * 2 + 1 > after
    ]
    assert again[0].data["node"] == "enrich"
    assert [e.event for e in resumed if isinstance(e, Event)][-2:] == ["status", "end"]
    # The same with the query parameter (for clients that cannot set headers).
    with httpx.Client(base_url=asgi_server.url, timeout=20, headers=headers) as http:
        text = http.get(f"/api/v1/runs/{run_id}/events", params={"last_event_id": after}).text
    by_query = only("step", parse_sse(text.split("\n")))
    assert [(e.id, e.data) for e in by_query] == [(e.id, e.data) for e in again]


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    remaining = iter(seen)
    return all(any(s == w for s in remaining) for w in wanted)


# --- in-process: the generator itself ----------------------------------------------------------


@pytest.fixture
def queued(hubspot: Connection, workflows: dict[str, Workflow]) -> WorkflowRun:
    return run_start(
        workflow=workflows[LEAD], actor=ACTOR, trigger="api", input={"contact_id": "7"}
    )


def test_an_idle_stream_sends_keepalives_and_ends_when_the_run_is_cancelled(
    queued: WorkflowRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(events, "KEEPALIVE_SECONDS", 0.3)

    async def follow() -> tuple[list[str], list[float]]:
        chunks: list[str] = []
        stamps: list[float] = []
        async for chunk in run_events(queued.pk):
            chunks.append(chunk)
            stamps.append(time.monotonic())
            if chunk == KEEPALIVE:
                # Between polls the stream holds no database connection.
                held.append(await sync_to_async(lambda: connection.connection is not None)())
                if chunks.count(KEEPALIVE) == 2:
                    await sync_to_async(run_cancel)(run=queued, actor=ACTOR)
        return chunks, stamps

    held: list[bool] = []
    chunks, stamps = async_to_sync(follow)()
    assert held == [False, False]
    assert chunks[0] == "retry: 2000\n\n"
    items = parse_chunks(chunks)
    assert [e.data["status"] for e in only("status", items)] == ["queued", "cancelled"]
    assert only("status", items)[0].id is None  # status events leave Last-Event-ID alone
    keepalives = [i for i, c in enumerate(chunks) if c == KEEPALIVE]
    assert len(keepalives) == 2
    assert stamps[keepalives[0]] - stamps[1] >= 0.3
    end = only("end", items)
    assert len(end) == 1
    assert end[0].data["status"] == "cancelled"
    assert end[0].data["run_id"] == str(queued.pk)
    assert not only("step", items)


def _step(run: WorkflowRun, node: str, status: StepStatus, *, ended: bool = True) -> RunStep:
    now = timezone.now()
    return RunStep.objects.create(
        run=run,
        task_id=uuid.uuid4().hex,
        node=node,
        status=status,
        input_summary={"node": node},
        output_summary={"ok": True} if status == StepStatus.SUCCEEDED else None,
        error_code="provider_error" if status == StepStatus.FAILED else "",
        error_message="HubSpot said no." if status == StepStatus.FAILED else "",
        started_at=now,
        finished_at=now if ended else None,
    )


def test_an_ended_run_streams_its_steps_after_last_event_id_then_ends(
    queued: WorkflowRun,
) -> None:
    first = _step(queued, "load", StepStatus.SUCCEEDED)
    second = _step(queued, "enrich", StepStatus.SUCCEEDED)
    third = _step(queued, "score", StepStatus.FAILED)
    WorkflowRun.objects.filter(pk=queued.pk).update(
        status=RunStatus.FAILED,
        error_code="provider_error",
        error_message="HubSpot said no.",
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )

    async def read(last: int) -> list[str]:
        return [chunk async for chunk in run_events(queued.pk, last_event_id=last)]

    everything = parse_chunks(async_to_sync(read)(0))
    steps = only("step", everything)
    assert [(e.id, e.data["node"]) for e in steps] == [
        (first.pk * 2 + 1, "load"),
        (second.pk * 2 + 1, "enrich"),
        (third.pk * 2 + 1, "score"),
    ]
    assert steps[2].data["error"] == {"code": "provider_error", "message": "HubSpot said no."}
    assert steps[0].data["output_summary"] == {"ok": True}
    kinds = [e.event for e in everything if isinstance(e, Event)]
    assert kinds == ["step", "step", "step", "status", "end"]
    status = only("status", everything)[0].data
    assert status["status"] == "failed"
    assert status["error"]["code"] == "provider_error"
    assert only("end", everything)[0].data["error"]["code"] == "provider_error"

    resumed = parse_chunks(async_to_sync(read)(first.pk * 2 + 1))
    assert [e.data["node"] for e in only("step", resumed)] == ["enrich", "score"]
    assert only("end", resumed)
    # Seen as running last time: the step is sent again now that it ended.
    resumed = parse_chunks(async_to_sync(read)(third.pk * 2))
    assert [(e.data["node"], e.data["status"]) for e in only("step", resumed)] == [
        ("score", "failed")
    ]


def test_steps_that_overlap_are_sent_in_id_order() -> None:
    run_id = uuid.uuid4()
    now = timezone.now()

    def step(pk: int, node: str, status: StepStatus) -> RunStep:
        return RunStep(pk=pk, run_id=run_id, task_id=node, node=node, status=status, started_at=now)

    cursor = RunEventCursor(run_id=run_id)
    sent: list[int] = []

    def send(*steps: RunStep) -> list[tuple[int | None, str, str]]:
        items = only("step", parse_chunks(cursor.steps(list(steps))))
        sent.extend(e.id for e in items if e.id is not None)
        return [(e.id, e.data["node"], e.data["status"]) for e in items]

    # Two branches start together: the second waits until the first has ended.
    assert send(step(10, "a", StepStatus.RUNNING), step(11, "b", StepStatus.RUNNING)) == [
        (20, "a", "running")
    ]
    assert send(step(10, "a", StepStatus.RUNNING), step(11, "b", StepStatus.SUCCEEDED)) == []
    assert send(step(10, "a", StepStatus.SUCCEEDED), step(11, "b", StepStatus.SUCCEEDED)) == [
        (21, "a", "succeeded"),
        (23, "b", "succeeded"),
    ]
    assert send(step(11, "b", StepStatus.SUCCEEDED), step(12, "c", StepStatus.RUNNING)) == [
        (24, "c", "running")
    ]
    assert sent == sorted(sent)
    assert cursor.last_id == 24


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 0), ("", 0), ("41", 41), (" 7 ", 7), ("abc", 0), ("-3", 0)]
)
def test_last_event_id_parsing(raw: str | None, expected: int) -> None:
    assert parse_last_event_id(raw) == expected


# --- through Django's ASGI handler: auth, scope, disconnects -----------------------------------


def test_another_organisations_or_an_anonymous_stream_is_refused_before_it_starts(
    queued: WorkflowRun, other_org: Organization, anon: Api
) -> None:
    other = Api(key=new_key(other_org))
    assert_envelope_error(other.get(f"/api/v1/runs/{queued.pk}/events"), 404, "not_found")
    assert_envelope_error(other.get("/api/v1/runs/nope/events"), 404, "not_found")
    assert_envelope_error(anon.get(f"/api/v1/runs/{queued.pk}/events"), 401, "unauthenticated")


def test_the_stream_stops_polling_when_the_client_disconnects(
    queued: WorkflowRun, org: Organization, caplog: pytest.LogCaptureFixture
) -> None:
    # Django's ASGI handler as config.asgi builds it (without django.setup() again, which
    # would reconfigure logging under caplog).
    application = ASGIHandler()
    key = new_key(org)
    path = f"/api/v1/runs/{queued.pk}/events"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Mapping[str, Any]] = []

    async def scenario() -> None:
        gone = asyncio.Event()
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Mapping[str, Any]) -> None:
            sent.append(message)
            if b"event: status" in message.get("body", b""):
                gone.set()  # the client leaves after the first event

        # The run never ends (no worker): only the disconnect can end this call.
        await asyncio.wait_for(application(scope, receive, send), timeout=10)

    with caplog.at_level(logging.DEBUG, logger="switchboard.workflows"):
        async_to_sync(scenario)()
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    headers = {k.lower(): v for k, v in sent[0]["headers"]}
    assert headers[b"content-type"] == b"text/event-stream"
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert b"event: status" in body
    assert b"event: end" not in body
    assert any("event stream closed" in r.getMessage() for r in caplog.records)
    assert WorkflowRun.objects.get(pk=queued.pk).status == RunStatus.QUEUED
