"""Device requests worked in a process of their own, beside the HTTP server.

One Python process has one GIL: the HTTP stack (parsing, routing, validation, responses) and the
device work (signature checks, nonces, every heartbeat and event batch written, long polls read)
took turns on one core however many the machine has, and the requests queued behind each other.
Here the server starts a second process, `python -m edgewise.fleet.gateway.device_process FD`, that runs
the group commit (`edgewise.fleet.gateway.group_commit`) and nothing else; the two talk over a socket pair:

    server ── ("settings", json) ─► device process        once, at start
           ◄─ ("ready", pid) ──────
           ── ("jobs", [Job, ...]) ─►                     each event-loop turn's requests, together
           ◄─ ("answers", [(ticket, result, error)], finished, written) ──  each batch, after commit
           ── ("stop",) ─►                                 answers what it holds, then exits

Messages are length-prefixed pickles between two processes of the same installation; nothing
from the network is unpickled (requests arrive already parsed and validated by the server).
Errors cross as the same EdgewiseError (so a refused signature is still a 401); a bug's exception
arrives as `InternalError` (a 500 for that request alone; the process lives on). If the process
dies, the requests it held get 503 and the server starts another. It exits when the server
closes the socket, killed or not.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from typing import cast

from edgewise.core.errors import EdgewiseError, InternalError, ServiceUnavailable
from edgewise.fleet.gateway.device_requests import Answer, DeviceRequests, answers_of
from edgewise.fleet.gateway.group_commit import Job, Outcome
from edgewise.fleet.settings import ServerSettings

log = logging.getLogger("edgewise.fleet")

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # after a crash, then after each failed restart
_LENGTH = struct.Struct("!I")
# ("settings", json) | ("ready", pid) | ("jobs", [Job]) | ("answers", [Answer], [Changes], written) | ("stop",)
Message = tuple[object, ...]


def frame(message: Message) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


class FrameReader:
    """Whole messages out of a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        start = 0
        while len(self._buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer, start)
            end = start + _LENGTH.size + length
            if len(self._buffer) < end:
                break
            try:
                messages.append(pickle.loads(self._buffer[start + _LENGTH.size:end]))
            except Exception:  # skip this frame; the stream stays in step, the next frame still reads
                log.exception("a message between the server and its device process could not be read")
            start = end
        del self._buffer[:start]
        return messages


def portable(error: BaseException | None) -> BaseException | None:
    """What of `error` can cross to the server: our own errors as they are, others by name.

    Only classes the server can import by the same name qualify: one defined in `__main__` (this
    process runs as `python -m`) or outside edgewise would fail to unpickle on the other side."""
    if error is None:
        return None
    if isinstance(error, EdgewiseError) and type(error).__module__.startswith("edgewise."):
        return error
    return InternalError.of(error)


# --- the server's side -------------------------------------------------------------------------


class DeviceProcess(DeviceRequests):
    """Starts, feeds and (after a crash) restarts the device process; answers its requests."""

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__()
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self._link: _Link | None = None
        self._outbox: list[Job] = []
        self._stopping = False
        self._restarting: asyncio.Task[None] | None = None
        self._launched: tuple[subprocess.Popen[bytes], socket.socket] | None = None  # by `prepare`
        self.restarts = 0  # times the process was lost and started again (0 is the goal; /healthz shows it)

    @property
    def running(self) -> bool:
        return self._link is not None and not self._stopping

    def prepare(self) -> None:
        """Start the device process now, before the server serves (blocking): `edgewise server` then
        fails to start with a one-line error, not from inside the ASGI lifespan."""
        if self._launched is None:
            self._launched = launch(self.settings)

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        launched, self._launched = self._launched, None
        if launched is None:
            launched = await asyncio.to_thread(launch, self.settings)
        await self._connect(launched)

    async def _connect(self, launched: tuple[subprocess.Popen[bytes], socket.socket]) -> None:
        process, sock = launched
        _transport, link = await asyncio.get_running_loop().create_unix_connection(lambda: _Link(self), sock=sock)
        self.process, self._link = process, link

    async def stop(self) -> None:
        self._stopping = True
        if self._launched is not None:  # prepared, never started
            prepared, sock = self._launched
            sock.close()  # it exits when its socket closes
            await asyncio.to_thread(_end, prepared, STOP_TIMEOUT_S)
            self._launched = None
        if self._restarting is not None:
            self._restarting.cancel()
        link, process = self._link, self.process
        if link is not None:
            self._flush()
            link.transport.write(frame(("stop",)))  # it answers what it holds, then closes its end
            try:
                await asyncio.wait_for(asyncio.shield(link.closed), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("the device request process did not stop within %.0f s", STOP_TIMEOUT_S)
            link.transport.close()
        if process is not None:
            await asyncio.to_thread(_end, process, STOP_TIMEOUT_S)
        self._link = None
        self._fail_waiting(ServiceUnavailable("the server is stopping", "retry in a moment"))

    def _send(self, job: Job) -> None:
        self._outbox.append(job)
        if len(self._outbox) == 1 and self._loop is not None:
            self._loop.call_soon(self._flush)  # whatever else this turn of the loop brings goes with it

    def _flush(self) -> None:
        jobs, self._outbox = self._outbox, []
        if not jobs:
            return
        link = self._link
        if link is None:
            self._settle([(job.ticket, None, _unavailable()) for job in jobs], [], False)
            return
        try:
            data = frame(("jobs", jobs))
        except Exception:  # a payload that cannot be pickled is a bug: those requests fail, not the rest
            log.exception("sending device requests to the device process failed")
            self._settle([(job.ticket, None, InternalError("PicklingError: request not sendable"))
                          for job in jobs], [], False)
            return
        link.transport.write(data)

    def _received(self, message: Message) -> None:
        if message[0] == "answers":
            _, answers, finished, written = message  # our own device process wrote it (see `_Answers`)
            self._settle(cast(list[Answer], answers), cast(list[object], finished), bool(written))

    def _lost(self, link: _Link) -> None:
        if link is not self._link or self._stopping:
            return
        self._link = None
        self.restarts += 1
        code = self.process.poll() if self.process is not None else None
        log.error("the device request process stopped (exit code %s); starting another", code)
        self._fail_waiting(_unavailable())
        self._restarting = asyncio.ensure_future(self._restart())

    async def _restart(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(_end, self.process, STOP_TIMEOUT_S)
        for delay in itertools.chain(RESTART_BACKOFF_S, itertools.repeat(RESTART_BACKOFF_S[-1])):
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._connect(await asyncio.to_thread(launch, self.settings))
                log.warning("device request process restarted (pid %s)", self.process.pid if self.process else "?")
                return
            except ServiceUnavailable as error:
                log.error("%s", error)


def launch(settings: ServerSettings) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start a device process and wait until it is ready (blocking); it and the server's end of
    its socket (non-blocking, for the event loop)."""
    ours, theirs = socket.socketpair()
    try:
        # `-m __name__`: this very module, run by its importable name (see the `__main__` block)
        process = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
    except OSError as error:
        ours.close()
        raise ServiceUnavailable(f"cannot start the device request process: {error}",
                                 "run the server with --single-process") from None
    finally:
        theirs.close()
    try:
        ours.settimeout(START_TIMEOUT_S)
        ours.sendall(frame(("settings", settings.model_dump_json())))
        reader, ready = FrameReader(), list[Message]()
        while not ready:  # its first message says it is ready; nothing else comes before our jobs
            data = ours.recv(1 << 16)
            if not data:
                raise ConnectionError("closed")
            ready = reader.feed(data)
    except (OSError, ConnectionError) as error:
        ours.close()
        timed_out = isinstance(error, TimeoutError)
        _end(process, 0 if timed_out else STOP_TIMEOUT_S)
        why = "did not answer in time" if timed_out else f"exited with code {process.returncode}"
        raise ServiceUnavailable(f"the device request process {why}",
                                 "see the server log above; or run the server with --single-process") from None
    ours.setblocking(False)
    return process, ours


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the device request process stopped; the server is starting another",
                              "retry in a moment")


def _end(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Link(asyncio.Protocol):
    def __init__(self, owner: DeviceProcess) -> None:
        self.owner = owner
        self.reader = FrameReader()
        self.transport: asyncio.Transport  # set by connection_made, which asyncio calls first
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a socket's transport reads and writes (uvloop's is not an asyncio.Transport subclass)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        for message in self.reader.feed(data):
            try:
                self.owner._received(message)
            except Exception:  # one answer we cannot use must not cut the link every device depends on
                log.exception("an answer from the device process could not be handled")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.owner._lost(self)


# --- the device process ------------------------------------------------------------------------


class _Answers:
    """The group commit's `deliver`: each batch's answers back to the server, from either thread."""

    def __init__(self, link: socket.socket) -> None:
        self.link = link
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        data = frame(message)
        with self._lock:
            try:
                self.link.sendall(data)
            except OSError:
                pass  # the server is gone: nobody waits for these answers any more

    def deliver(self, outcomes: list[Outcome], finished: list[object], written: bool) -> None:
        answers: list[Answer] = [(ticket, result, portable(error)) for ticket, result, error in answers_of(outcomes)]
        try:
            self.send(("answers", answers, finished, written))
        except (pickle.PicklingError, TypeError, AttributeError) as error:  # a result that cannot cross: a bug
            log.exception("answers of a batch could not be sent")
            failed = InternalError(f"{type(error).__name__}: the answer could not be sent back")
            self.send(("answers", [(ticket, None, failed) for ticket, _, _ in answers], [], written))


def main(argv: list[str] | None = None) -> int:
    """The device process: `python -m edgewise.fleet.gateway.device_process FD` (started by the server)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("edgewise's fleet server starts this process itself; run `edgewise server`", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the server stops us
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: [device process] %(message)s")
    link = socket.socket(fileno=int(args[0]))
    reader = FrameReader()
    pending: list[Message] = []
    while not pending:
        data = link.recv(1 << 16)
        if not data:
            return 0
        pending = reader.feed(data)
    _kind, settings_json = pending.pop(0)
    return _serve(link, reader, ServerSettings.model_validate_json(str(settings_json)), pending)


def _serve(link: socket.socket, reader: FrameReader, settings: ServerSettings, pending: list[Message]) -> int:
    from edgewise.fleet.auth import DeviceAuthenticator
    from edgewise.fleet.db import open_database
    from edgewise.fleet.gateway.device_requests import build_group_commit
    from edgewise.fleet.gateway.gc_tuning import tune_gc

    db = open_database(settings.db_url, run_migrations=False)  # the server migrated it before starting us
    commit = build_group_commit(db, DeviceAuthenticator(db), settings)
    answers = _Answers(link)
    commit.deliver = answers.deliver
    commit.start()
    tune_gc()
    answers.send(("ready", os.getpid()))
    try:
        while True:
            for message in pending:
                if message[0] == "stop":
                    return 0
                for job in cast(list[Job], message[1]):  # the server wrote it (see `DeviceProcess._send`)
                    commit.put(job)
            data = link.recv(1 << 20)
            if not data:
                return 0  # the server is gone
            pending = reader.feed(data)
    finally:
        commit.stop()  # answers what it still holds (503 for what it had not started)
        db.dispose()
        link.close()


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy of it: what it pickles then names its
    # classes by their importable module, which the server can unpickle.
    from edgewise.fleet.gateway import device_process as _importable

    sys.exit(_importable.main())
