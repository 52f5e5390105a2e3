"""Fault injection: devhost on SQLite keeps every accepted message exactly once through faults.

Every scenario ends with the same audit (`tests/integration/audit.py`): each accepted
message (a POST answered 202/200) has exactly one user entry and exactly one final reply,
replies follow the messages in the order they were sent, and the database file passes
`PRAGMA integrity_check`.

1. SIGKILL chaos while many threads talk (devhost with its in-process SQLite hub).
2. The model failing about 30% of its calls with 429 or 500 (the app retries with backoff).
3. devhost killed after an activity finished but before its completion reached the hub.
4. The database turning read-only in the middle of a turn.
5. A worker whose connection to the hub drops while an activity runs.
6. The hub's wall clock jumping an hour forward and back in the middle of a turn.

Scenarios 3-6 run the SQLite hub in a process of its own (`python -m devhost.sqlite_hub`'s
pieces, started by `HUB_LAUNCHER` below) with devhost reaching it through a loopback TCP
proxy owned by the test (`--backend 127.0.0.1:PORT`). The proxy can hold back what devhost
sends (so a completion provably has not landed) or cut every connection (a worker that
disconnects). The hub process reads commands on stdin: run one SQL statement on the hub's
own connection (`PRAGMA query_only`, as the hub's own storage-fault tests do) or move its
clock, which is the `devhost.sqlite_hub.events.now` seam every lease, timer and timestamp
reads. That process is dedicated to the test, so no clock is patched in a shared process.

Duplicate completions and redelivered work items at the protocol level are covered by
`tests/sqlite_hub/protocol/test_leases_and_streams.py` (stale and repeated completions are
rejected and the step applied once; a closed stream's work is handed out again at once; an
expired lease's work is handed out again) and `test_storage_faults.py` (full and read-only
databases at the protocol level); this file adds the app-level variants.

CI mode is short. `pytest --soak` (or SOAK=1) runs scenarios 1 and 2 longer and bigger
(SOAK_KILLS sets the number of kills in soak mode, default 60).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from google.protobuf import timestamp_pb2

from tests.conftest import soak_mode
from tests.fakes import model_server as steps
from tests.fakes.model_server import FakeModelServer
from tests.integration.audit import Sender, audit_thread, integrity_ok, wait_settled
from tests.integration.conftest import model_env, unique
from tests.integration.harness import REPO, Api, DevhostProcess, free_port, wait_until
from tests.sqlite_hub.protocol.raw import RawStream
from tests.sqlite_hub.protocol.raw import start as raw_start

MAX_ATTEMPTS = 4


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    return soak_mode(request.config)


def calls_for(model: FakeModelServer, content: str) -> list[str]:
    """What the model served (`echo`, `error`, ...) to each request whose last user message is `content`."""
    served = []
    for request in model.requests:
        users = [m for m in request.messages if m.get("role") == "user"]
        if users and users[-1].get("content") == content:
            served.append(request.served)
    return served


def new_thread(api: Api, prefix: str) -> str:
    thread_id = unique(prefix)
    reply = api.post("/api/threads", {"thread_id": thread_id})
    assert reply.status == 201, reply.body
    return thread_id


class Talkers:
    """One client thread per conversation thread; `errors` collects what went wrong in them."""

    def __init__(self, senders: list[Sender]) -> None:
        self.senders = senders
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, messages: int, gate: Any = None) -> None:
        def talk(sender: Sender) -> None:
            try:
                for number in range(messages):
                    if gate is not None:
                        gate(number)
                    sender.send(f"{sender.thread_id} says {number}")
            except BaseException as error:  # re-raised by join()
                self.errors.append(error)

        self.threads = [threading.Thread(target=talk, args=(s,), daemon=True) for s in self.senders]
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float = 180.0) -> None:
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a client never finished"
        if self.errors:
            raise self.errors[0]


# -- 1. SIGKILL chaos ------------------------------------------------------------------------


def test_sigkill_chaos_while_many_threads_talk(tmp_path: Path, model: FakeModelServer, soak: bool) -> None:
    threads, messages, kills = (50, 16, int(os.environ.get("SOAK_KILLS", "60"))) if soak else (10, 4, 4)
    model.set_default(steps.echo(delay=0.05))
    db, port = tmp_path / "taskhub.db", free_port()

    def start() -> DevhostProcess:
        host = DevhostProcess(
            tmp_path / "devhost.log", backend="sqlite", db_path=db, env=model_env(model), port=port
        )
        return host.start(timeout=60)

    host = start()
    senders = [Sender(host.api, new_thread(host.api, "chaos")) for _ in range(threads)]
    total = threads * messages
    talkers = Talkers(senders)
    # Message n of every thread goes out once the model has answered n/2 rounds, so POSTs,
    # model calls and kills interleave without timing assumptions.
    talkers.start(
        messages,
        gate=lambda n: wait_until(
            lambda: len(model.requests) >= n * threads // 2, timeout=180, what=f"round {n}"
        ),
    )
    try:
        for kill in range(kills):
            mark = (kill + 1) * total // (kills + 1)
            wait_until(lambda m=mark: len(model.requests) >= m, timeout=180, what=f"{mark} model calls")
            host.kill()
            host = start()
        talkers.join()
        for sender in senders:
            wait_settled(host.api, sender.thread_id, len(sender.accepted), timeout=180)
            audit_thread(host.api, sender.thread_id, sender.accepted)
    finally:
        assert host.stop() == 0, host.log()
    assert integrity_ok(db)
    accepted = sum(len(s.accepted) for s in senders)
    assert accepted == total
    print(f"\n{kills} kills, {accepted} messages, {sum(s.attempts for s in senders)} POST attempts")


# -- 2. a flaky model ------------------------------------------------------------------------


def test_model_failing_a_third_of_calls_still_answers_each_message_once(
    tmp_path: Path, model: FakeModelServer, soak: bool
) -> None:
    threads, messages = (20, 20) if soak else (4, 5)
    env = model_env(model) | {"MODEL_MAX_ATTEMPTS": str(MAX_ATTEMPTS), "MODEL_RETRY_MAX_SECONDS": "30"}
    db = tmp_path / "taskhub.db"
    host = DevhostProcess(tmp_path / "devhost.log", backend="sqlite", db_path=db, env=env).start(timeout=60)
    try:
        # A turn whose every attempt fails ends in one error reply; the thread goes on.
        doomed = Sender(host.api, new_thread(host.api, "flaky"))
        model.enqueue(*[steps.error(500, retry_after_ms=10) for _ in range(MAX_ATTEMPTS)])
        doomed.send("every attempt fails")
        wait_settled(host.api, doomed.thread_id, 1)
        assert calls_for(model, "every attempt fails") == ["error"] * MAX_ATTEMPTS

        rng = random.Random(20261202)
        script = [
            steps.error(rng.choice([429, 500]), retry_after_ms=10) if rng.random() < 0.3 else steps.echo()
            for _ in range(threads * messages * 2)
        ]
        model.enqueue(*script)
        senders = [doomed] + [Sender(host.api, new_thread(host.api, "flaky")) for _ in range(threads - 1)]
        talkers = Talkers(senders)
        talkers.start(messages)
        talkers.join()

        def may_fail(message_id: str, content: str) -> bool:
            return calls_for(model, content) == ["error"] * MAX_ATTEMPTS  # only if every attempt failed

        failed = 0
        for sender in senders:
            wait_settled(host.api, sender.thread_id, len(sender.accepted), timeout=120)
            for entry in audit_thread(host.api, sender.thread_id, sender.accepted, may_fail=may_fail):
                failed += bool(entry["role"] == "assistant" and entry.get("error"))
            for _, content in sender.accepted:
                served = calls_for(model, content)
                # retried only after a failure, never after the answer; at most MAX_ATTEMPTS calls
                assert 1 <= len(served) <= MAX_ATTEMPTS, (content, served)
                assert all(s == "error" for s in served[:-1]), (content, served)
                assert served[-1] == "echo" or may_fail("", content), (content, served)
    finally:
        assert host.stop() == 0, host.log()
    assert integrity_ok(db)
    errors = sum(1 for r in model.requests if r.served == "error")
    assert errors >= 0.15 * len(model.requests), "the script did not fail enough calls to test anything"
    print(f"\n{len(model.requests)} model calls, {errors} failed; {failed} turns failed after every attempt")


# -- the stack for scenarios 3-6: a hub process, a proxy, devhost ------------------------------

HUB_LAUNCHER = r"""
import json, logging, pathlib, sys, time
import devhost.sqlite_hub.events as ev
from devhost.sqlite_hub import SqliteSidecar

offset = 0.0
def now():
    return time.time() + offset
ev.now = now  # every lease, timer and timestamp of the hub reads this seam
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                    stream=sys.stderr)
hub = SqliteSidecar(pathlib.Path(sys.argv[1]), port=int(sys.argv[2]))
hub.start()
print(f"LISTENING {hub.address}", flush=True)
for line in sys.stdin:
    command = json.loads(line)
    row = None
    if "clock" in command:
        offset = float(command["clock"])
    if "sql" in command:
        with hub.storage.read() as conn:
            found = conn.execute(command["sql"]).fetchone()
            row = None if found is None else list(found)
    print(f"ACK {command['id']} {json.dumps(row)}", flush=True)
hub.stop(grace=2.0)
print("STOPPED", flush=True)
"""


class HubProcess:
    """The SQLite hub in a process of its own that takes fault commands on stdin."""

    def __init__(self, folder: Path) -> None:
        self.db = folder / "taskhub.db"
        self.log_path = folder / "hub.log"
        self.port = free_port()
        self.commands = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.stdin: IO[bytes] | None = None

    def start(self) -> HubProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", HUB_LAUNCHER, str(self.db), str(self.port)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.stdin = self.process.stdin
        wait_until(lambda: "LISTENING" in self.log(), timeout=30, what="the hub process")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def control(self, **command: Any) -> Any:
        """Runs one command in the hub process and returns its result (an SQL row, or None)."""
        assert self.stdin is not None
        self.commands += 1
        marker = f"ACK {self.commands} "
        self.stdin.write((json.dumps({"id": self.commands, **command}) + "\n").encode())
        self.stdin.flush()
        wait_until(lambda: marker in self.log(), timeout=20, what=f"hub command {command}")
        line = next(line for line in self.log().splitlines() if line.startswith(marker))
        return json.loads(line[len(marker) :])

    def stop(self) -> int:
        assert self.process is not None
        assert self.stdin is not None
        self.stdin.close()
        return self.process.wait(30)


class Proxy:
    """A loopback TCP proxy from devhost to the hub that can hold devhost's bytes or cut everything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.holding = False
        self.held = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                downstream.close()
                continue
            with self.lock:
                self.sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_devhost: bool) -> None:
        try:
            while data := source.recv(65536):
                with self.lock:
                    if from_devhost and self.holding:
                        self.held += data  # never reaches the hub
                        continue
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def hold(self) -> None:
        """From now on nothing devhost sends reaches the hub (until `cut`)."""
        with self.lock:
            self.holding, self.held = True, bytearray()

    def holds(self, needle: bytes) -> bool:
        with self.lock:
            return needle in self.held

    def cut(self) -> None:
        """Drops every connection (and whatever was held back); new connections work again."""
        with self.lock:
            for end in self.sockets:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            self.sockets, self.holding, self.held = [], False, bytearray()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@dataclass
class Stack:
    hub: HubProcess
    proxy: Proxy
    host: DevhostProcess
    folder: Path
    env: dict[str, str]

    def start_devhost(self) -> DevhostProcess:
        self.host = DevhostProcess(
            self.folder / "devhost.log",
            backend=f"127.0.0.1:{self.proxy.port}",
            env=self.env,
            port=self.host.port if self.host.process is not None else None,
        ).start(timeout=60)
        return self.host


@pytest.fixture
def stack(tmp_path: Path, model: FakeModelServer) -> Iterator[Stack]:
    hub = HubProcess(tmp_path).start()
    proxy = Proxy(hub.port)
    env = model_env(model)
    placeholder = DevhostProcess(tmp_path / "devhost.log", env=env)
    result = Stack(hub, proxy, placeholder, tmp_path, env)
    result.start_devhost()
    try:
        yield result
    finally:
        try:
            assert result.host.stop() == 0, result.host.log()
        finally:
            proxy.close()
            assert hub.stop() == 0, hub.log()
    assert integrity_ok(hub.db)


def warm_up(stack: Stack, prefix: str) -> Sender:
    """A thread that has answered one message, so the next turn's only work is the model call."""
    sender = Sender(stack.host.api, new_thread(stack.host.api, prefix))
    sender.send("warm up")
    wait_settled(stack.host.api, sender.thread_id, 1)
    return sender


# -- 3. killed after the activity finished, before its completion landed ---------------------


def test_devhost_killed_before_a_finished_activity_is_completed(stack: Stack, model: FakeModelServer) -> None:
    sender = warm_up(stack, "lost-completion")
    content = "answered just before the crash"
    model.enqueue(steps.echo(delay=1.0))
    sender.send(content)
    wait_until(lambda: calls_for(model, content), what="the model call")
    stack.proxy.hold()
    # The activity finished and devhost sent its result; the proxy holds it back from the hub.
    wait_until(
        lambda: stack.proxy.holds(f"echo: {content}".encode()), timeout=30, what="the held-back completion"
    )
    stack.host.kill()
    stack.proxy.cut()  # the hub sees the worker's stream close
    stack.start_devhost()
    wait_settled(stack.host.api, sender.thread_id, 2)
    audit_thread(stack.host.api, sender.thread_id, sender.accepted)
    assert calls_for(model, content) == ["echo", "echo"], "the model is called again, and only once more"


# -- 4. the database turns read-only or full mid-turn -----------------------------------------

# "Full" is SQLite's own size limit at the current size (SQLITE_FULL, what a full disk gives),
# as in the hub's own tests: a tiny filesystem is not available here. The turn's reply is
# large so that storing it needs pages the file does not have.
FAULTS = {
    "read-only": ("PRAGMA query_only = ON", "PRAGMA query_only = OFF", "read-only", 0),
    "full": ("PRAGMA max_page_count = {pages}", "PRAGMA max_page_count = 1073741823", "disk is full", 30_000),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_storage_fault_mid_turn_loses_no_acknowledged_message(
    stack: Stack, model: FakeModelServer, fault: str
) -> None:
    on, off, words, padding = FAULTS[fault]
    sender = warm_up(stack, fault)
    content = "stored once writes work again " + "x" * padding
    model.enqueue(steps.echo(delay=1.0))
    sender.send(content)
    wait_until(lambda: calls_for(model, content), what="the model call")
    pages = stack.hub.control(sql="PRAGMA page_count")[0]
    stack.hub.control(sql=on.format(pages=pages))

    # The turn's next write (the activity's result, or the step that stores the reply) is
    # rolled back, and the work is handed out again (after 1 s) and refused again: twice seen.
    def refusals() -> int:
        return sum(
            1
            for line in stack.host.log().splitlines()
            if "could not complete" in line and words in line and str(stack.hub.db) in line
        )

    wait_until(lambda: refusals() >= 2, timeout=30, what="the rolled-back work handed out again")
    # A message sent meanwhile is either refused (503) or, if accepted, must survive.
    during, during_id = f"sent while {fault}", unique(fault)
    reply = stack.host.api.post(
        f"/api/threads/{sender.thread_id}/messages", {"content": during, "message_id": during_id}, timeout=30
    )
    assert reply.status in (202, 503), (reply.status, reply.body)
    if reply.status == 202:
        sender.accepted.append((during_id, during))
    lines = [line for line in stack.hub.log().splitlines() if " ERROR " in line and words in line]
    assert len(lines) == 1, lines  # said once, not once per retry...
    assert str(stack.hub.db) in lines[0]  # ...with the file's path
    stack.hub.control(sql=off)
    if reply.status == 503:
        sender.send(during)
    wait_settled(stack.host.api, sender.thread_id, len(sender.accepted), timeout=60)
    audit_thread(stack.host.api, sender.thread_id, sender.accepted)
    assert "accepts writes again" in stack.hub.log()
    print(f"\n{fault}: POST meanwhile answered {reply.status}; {lines[0]}")


# -- 5. the worker's connection drops mid-activity ----------------------------------------------


def test_worker_disconnected_mid_activity_gets_it_again_and_stores_one_reply(
    stack: Stack, model: FakeModelServer
) -> None:
    sender = warm_up(stack, "disconnect")
    content = "answered after the worker reconnects"
    model.enqueue(steps.echo(delay=1.0))
    sender.send(content)
    wait_until(lambda: calls_for(model, content), what="the model call")
    stack.proxy.cut()  # the work-item stream closes while the activity runs
    wait_settled(stack.host.api, sender.thread_id, 2)
    assert calls_for(model, content) == ["echo", "echo"], "handed out again once, after the drop"
    # The first run finishes later; its result cannot be sent on the dropped channel (or is
    # refused as stale) and changes nothing. (devhost logs the closed channel as an unretrieved
    # task exception, UsageError('Channel is closed.'), rather than its "could not complete" line.)
    signs = ("could not complete activity", "Channel is closed")
    wait_until(
        lambda: any(s in stack.host.log() for s in signs), timeout=30, what="the first run's completion"
    )
    audit_thread(stack.host.api, sender.thread_id, sender.accepted)


# -- 6. the wall clock jumps -----------------------------------------------------------------


def test_wall_clock_jumping_an_hour_forward_and_back_mid_turn(stack: Stack, model: FakeModelServer) -> None:
    sender = warm_up(stack, "clock")
    nudge = Sender(stack.host.api, new_thread(stack.host.api, "nudge"))
    forward = "the clock jumps forward while I am answered"
    model.enqueue(steps.echo(delay=1.5))
    sender.send(forward)
    wait_until(lambda: calls_for(model, forward), what="the model call")
    stack.hub.control(clock=3600)
    # Leases read the wall clock: the running activity's 300 s lease has now expired. The hub
    # notices at its next wake-up (a commit or a 30 s ping); a message elsewhere commits.
    nudge.send("nudge 1")
    wait_settled(stack.host.api, sender.thread_id, 2)
    assert calls_for(model, forward) == ["echo", "echo"], "the expired lease's activity ran again"
    # The first run finishes later and its completion is refused as stale: nothing doubles.
    wait_until(lambda: "FAILED_PRECONDITION" in stack.host.log(), timeout=30, what="the stale completion")
    audit_thread(stack.host.api, sender.thread_id, sender.accepted)

    back = "the clock jumps back while I am answered"
    model.enqueue(steps.echo(delay=1.0))
    sender.send(back)
    wait_until(lambda: calls_for(model, back), what="the model call")
    stack.hub.control(clock=0)
    nudge.send("nudge 2")
    wait_settled(stack.host.api, sender.thread_id, 3)
    assert calls_for(model, back) == ["echo"], "a lease does not expire when the clock goes back"
    wait_settled(stack.host.api, nudge.thread_id, 2)
    audit_thread(stack.host.api, sender.thread_id, sender.accepted)
    audit_thread(stack.host.api, nudge.thread_id, nudge.accepted)


def test_durable_timer_fires_by_the_hub_wall_clock(tmp_path: Path) -> None:
    """Protocol level, on a hub process of its own: a durable timer is an absolute wall-clock
    time (as in Durable Functions), so a timer ten minutes away fires as soon as the hub's clock
    jumps an hour forward, and the step it wakes sees the jumped time."""
    hub = HubProcess(tmp_path).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
            stub = stubs.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
            stream = RawStream(stub)
            try:
                raw_start(stub, "timer-1")
                first = stream.next()
                began = first.orchestratorRequest.newEvents[0].timestamp.seconds  # orchestratorStarted
                timer = pb.OrchestratorAction(
                    id=1,
                    createTimer=pb.CreateTimerAction(fireAt=timestamp_pb2.Timestamp(seconds=began + 600)),
                )
                stub.CompleteOrchestratorTask(
                    pb.OrchestratorResponse(
                        instanceId="timer-1", completionToken=first.completionToken, actions=[timer]
                    )
                )
                hub.control(clock=3600)
                raw_start(stub, "nudge-1")  # a commit wakes the stream (as would its 30 s ping)
                items = {item.orchestratorRequest.instanceId: item for item in (stream.next(), stream.next())}
                assert set(items) == {"timer-1", "nudge-1"}
                events = items["timer-1"].orchestratorRequest.newEvents
                fired = [e.timerFired for e in events if e.HasField("timerFired")]
                assert [f.timerId for f in fired] == [1]
                assert events[0].timestamp.seconds >= began + 3600  # the step sees the hub's new time
            finally:
                stream.close()
    finally:
        assert hub.stop() == 0, hub.log()
    assert integrity_ok(hub.db)
