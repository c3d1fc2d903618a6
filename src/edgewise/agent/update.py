"""The update state machine: one transition table, state saved to disk before each state runs.

    idle ──offer──► download ─ok─► verify ─ok─► install ─ok─► activate ─ok─► health-check ─ok─► commit ─ok─► idle
                       │              │            │             │                │
                     error          error        error         error            error
                       ▼              ▼            ▼             ▼                ▼
                     failed ◄───────────────────────────────── rollback ◄──────────┘
                                                                 ─ok─► failed

A state handler is idempotent, so after a kill -9 or a power cut `recover()` simply runs the saved
state again: download resumes with an HTTP Range request, verify re-extracts, install renames,
activate re-points the symlinks, health-check starts a fresh window, rollback re-points back.
A handler that raises ServiceUnavailable (network) keeps its state and is retried later.
Restarting inside activate/health-check counts as a boot; past `boot_loop_limit` boots the new
model is presumed to crash the agent, and the machine rolls back.

Layout under the data directory:

    update.json                 the persisted UpdateRecord
    downloads/<hex>.tar         partial or complete archive
    staging/<hex>/              extracted and verified, not yet installed
    slots/<hex>/                installed bundles
    current -> slots/<hex>      the model that serves (atomic symlink switch)
    previous -> slots/<hex>     the one to roll back to
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from edgewise.agent.identity import write_json_atomic
from edgewise.core.bundle import read_manifest, verify_bundle
from edgewise.core.errors import EdgewiseError, InvalidBundle, ServiceUnavailable
from edgewise.core.manifest import Manifest
from edgewise.core.signing import PublicKey
from edgewise.core.verified_extract import extract_verified_bundle
from edgewise.core.wire import BundleRef, InstalledBundle, UpdateProgress, UpdateState

Outcome = Literal["ok", "error"]

# The whole machine. A reader can check it against DESIGN.md line by line.
TRANSITIONS: dict[tuple[UpdateState, Outcome], UpdateState] = {
    ("download", "ok"): "verify",
    ("download", "error"): "failed",
    ("verify", "ok"): "install",
    ("verify", "error"): "failed",
    ("install", "ok"): "activate",
    ("install", "error"): "failed",
    ("activate", "ok"): "health-check",
    ("activate", "error"): "rollback",
    ("health-check", "ok"): "commit",
    ("health-check", "error"): "rollback",
    ("commit", "ok"): "idle",
    ("commit", "error"): "idle",
    ("rollback", "ok"): "failed",
    ("rollback", "error"): "failed",
}
RESTING: frozenset[UpdateState] = frozenset({"idle", "failed"})
BOOT_COUNTED: frozenset[UpdateState] = frozenset({"activate", "health-check"})
RECORD_FILE = "update.json"


class UpdateRecord(BaseModel):
    state: UpdateState = "idle"
    target: BundleRef | None = None
    deployment_id: str | None = None
    previous_digest: str | None = None
    error: str | None = None
    boots_in_state: int = 0
    history: list[str] = Field(default_factory=list, description="every state entered, oldest first (last 50)")
    failed_digests: list[str] = Field(default_factory=list)
    allow_downgrade: bool = Field(default=False,
                                  description="the target may be older than what runs (an operator's rollback)")
    refused_downgrades: list[str] = Field(default_factory=list, description="older targets refused (anti-rollback)")

    def progress(self) -> UpdateProgress:
        return UpdateProgress(
            state=self.state, deployment_id=self.deployment_id,
            target_digest=self.target.digest if self.target else None, error=self.error,
            detail=" > ".join(self.history[-12:]),
        )


def digest_hex(digest: str) -> str:
    hex_part = digest.split(":", 1)[-1]
    if not hex_part or not all(c in "0123456789abcdef" for c in hex_part):
        raise InvalidBundle(f"malformed bundle digest {digest!r}", "expected sha256:<hex>")
    return hex_part


class Slots:
    """Installed bundles and the two pointers, switched atomically with a symlink rename."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "slots"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest_hex(digest)

    def pointer(self, name: str) -> Path | None:
        link = self.data_dir / name
        return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None

    def digest_of(self, name: str) -> str | None:
        target = self.pointer(name)
        return "sha256:" + target.name if target else None

    def installed(self, name: str) -> InstalledBundle | None:
        target = self.pointer(name)
        if target is None:
            return None
        manifest = read_manifest(target)
        return InstalledBundle(name=manifest.name, version=manifest.version, digest=manifest.digest)

    def set_pointer(self, name: str, digest: str | None) -> None:
        link = self.data_dir / name
        if digest is None:
            link.unlink(missing_ok=True)
            return
        temp = self.data_dir / f".{name}.tmp"
        temp.unlink(missing_ok=True)
        os.symlink(Path("slots") / digest_hex(digest), temp)
        os.replace(temp, link)
        fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


Downloader = Callable[[BundleRef, Path], Path]
HealthCheck = Callable[[Path, Manifest], object]


class UpdateMachine:
    def __init__(
        self,
        data_dir: Path,
        trusted_keys: list[PublicKey],
        download: Downloader,
        health_check: HealthCheck,
        on_transition: Callable[[UpdateRecord], None] = lambda record: None,
        on_activate: Callable[[], None] = lambda: None,
        target_families: list[str] | None = None,
        boot_loop_limit: int = 3,
        after_persist: Callable[[UpdateState], None] | None = None,
    ) -> None:
        """`after_persist(state)` runs when a state is on disk and before it runs: the point where
        the reliability tests kill the agent (`edgewise.agent.fault_injection`)."""
        self.data_dir = data_dir
        self.slots = Slots(data_dir)
        self.trusted_keys = trusted_keys
        self._fetch, self._check_model = download, health_check
        self._on_transition, self._on_activate = on_transition, on_activate
        self.target_families = target_families or ["cpu"]
        self.boot_loop_limit = boot_loop_limit
        self._after_persist = after_persist
        self.record = self._load()

    # --- persistence ------------------------------------------------------------------------
    def _load(self) -> UpdateRecord:
        path = self.data_dir / RECORD_FILE
        if not path.is_file():
            return UpdateRecord()
        return UpdateRecord.model_validate(json.loads(path.read_text()))

    def _enter(self, state: UpdateState, error: str | None = None) -> None:
        """Persist the next state BEFORE it runs, report it, then call the after-persist hook."""
        self.record.state = state
        self.record.error = error
        self.record.boots_in_state = 0
        self.record.history = (self.record.history + [state])[-50:]
        write_json_atomic(self.data_dir / RECORD_FILE, self.record.model_dump(mode="json"))
        self._on_transition(self.record)
        if self._after_persist is not None:
            self._after_persist(state)

    # --- driving ----------------------------------------------------------------------------
    @property
    def at_rest(self) -> bool:
        return self.record.state in RESTING

    def recover(self) -> None:
        """On start: count a boot inside activate/health-check, rolling back past the limit."""
        if self.record.state in BOOT_COUNTED:
            self.record.boots_in_state += 1
            write_json_atomic(self.data_dir / RECORD_FILE, self.record.model_dump(mode="json"))
            if self.record.boots_in_state > self.boot_loop_limit:
                self._enter("rollback", f"boot loop: restarted {self.boot_loop_limit} times in {self.record.state}")

    def offer(self, target: BundleRef | None, deployment_id: str | None = None, allow_downgrade: bool = False) -> bool:
        """Start an update to `target` if it is new; True when one was started.

        An older version of the bundle that runs is refused (anti-rollback: a stale or replayed
        desired state cannot take a device back to a version with known faults) unless the server
        says an operator rolled back to it (`allow_downgrade`)."""
        if target is None or not self.at_rest:
            return False
        if target.digest == self.slots.digest_of("current") or target.digest in self.record.failed_digests:
            return False
        if target.digest in self.record.refused_downgrades and not allow_downgrade:
            return False
        keep = digest_hex(target.digest)
        for leftover in ("staging", "downloads"):  # what an earlier failed update left behind
            for path in (self.data_dir / leftover).glob("*"):
                if path.name.startswith(keep):
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        self.record.target = target
        self.record.deployment_id = deployment_id
        self.record.allow_downgrade = allow_downgrade
        self.record.previous_digest = self.slots.digest_of("current")
        self._enter("download")
        return True

    def step(self) -> bool:
        """Run the current state once; False when resting or when the network must be retried."""
        state = self.record.state
        if state in RESTING:
            return False
        try:
            STATE_WORK[state](self)
            outcome: Outcome = "ok"
            error = None
        except ServiceUnavailable:
            raise
        except EdgewiseError as failure:
            outcome, error = "error", failure.message
        except Exception as failure:  # a broken model can raise anything; it must not kill the agent
            outcome, error = "error", f"{failure.__class__.__name__}: {failure}"
        if error is None and state == "rollback":
            error = self.record.error  # keep the reason the rollback happened
        self._enter(TRANSITIONS[(state, outcome)], error)
        return True

    def run_until_rest(self) -> None:
        while self.step():
            pass

    # --- the states -------------------------------------------------------------------------
    def _paths(self) -> tuple[Path, Path, Path]:
        if self.record.target is None:
            raise InvalidBundle("update record has no target bundle", "the update record is corrupt")
        hex_digest = digest_hex(self.record.target.digest)
        return (self.data_dir / "downloads" / f"{hex_digest}.tar", self.data_dir / "staging" / hex_digest,
                self.slots.path(self.record.target.digest))

    def _run_download(self) -> None:
        archive, _, slot = self._paths()
        if (slot / "bundle.json").is_file():
            return  # already installed earlier (e.g. the previous slot); verify will re-check it
        archive.parent.mkdir(parents=True, exist_ok=True)
        self._fetch(assert_present(self.record.target), archive)
        expected = self.record.target.size_bytes if self.record.target else 0
        if expected and archive.stat().st_size != expected:
            size = archive.stat().st_size
            archive.unlink(missing_ok=True)
            raise InvalidBundle(f"downloaded {size} bytes, the server announced {expected}")

    def _run_verify(self) -> None:
        archive, staging, slot = self._paths()
        if (slot / "bundle.json").is_file():  # installed before (the previous slot): checked again, as signed
            manifest = verify_bundle(slot, self.trusted_keys)
            assert_target(manifest, self.record.target)
            self._refuse_downgrade(manifest)
            return
        shutil.rmtree(staging, ignore_errors=True)
        try:
            # Signature and digest are checked before a byte is extracted; then only what they sign.
            target = self.record.target.digest if self.record.target else None
            manifest = extract_verified_bundle(archive, staging, self.trusted_keys, target)
            self._refuse_downgrade(manifest)
            manifest.variant_for(self.target_families)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            archive.unlink(missing_ok=True)  # a bad archive is not resumed
            raise

    def _refuse_downgrade(self, manifest: Manifest) -> None:
        """Judged on the signed manifest, not on what the server's reference says the version is."""
        running = self.slots.installed("current")
        if running is None or running.name != manifest.name or self.record.allow_downgrade:
            return
        if version_key(manifest.version) < version_key(running.version):
            self.record.refused_downgrades = (self.record.refused_downgrades + [manifest.digest])[-20:]
            raise InvalidBundle(f"refused {manifest.ref}: older than the running {running.version} (anti-rollback)",
                                "roll back from the server (`edgewise deployments rollback ID`) or deploy with "
                                "--allow-downgrade")

    def _run_install(self) -> None:
        archive, staging, slot = self._paths()
        if not (slot / "bundle.json").is_file():
            if not staging.is_dir():
                raise InvalidBundle("verified bundle vanished before install", "the update will be retried")
            shutil.rmtree(slot, ignore_errors=True)
            os.replace(staging, slot)
        archive.unlink(missing_ok=True)

    def _run_activate(self) -> None:
        _, _, slot = self._paths()
        assert_target(read_manifest(slot), self.record.target)
        self.slots.set_pointer("previous", self.record.previous_digest)
        self.slots.set_pointer("current", self.record.target.digest if self.record.target else None)
        self._on_activate()

    def _run_health_check(self) -> None:
        _, _, slot = self._paths()
        self._check_model(slot, read_manifest(slot))

    def _run_commit(self) -> None:
        keep = {self.slots.digest_of("current"), self.slots.digest_of("previous")}
        for slot in self.slots.root.iterdir():
            if "sha256:" + slot.name not in keep:
                shutil.rmtree(slot, ignore_errors=True)

    def _run_rollback(self) -> None:
        if self.record.target and self.record.target.digest not in self.record.failed_digests:
            self.record.failed_digests = (self.record.failed_digests + [self.record.target.digest])[-20:]
        self.slots.set_pointer("current", self.record.previous_digest)
        self._on_activate()


def _version_parts(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"[._]", text) if part)


# What each working state does; resting states (idle, failed) do nothing. Together with
# TRANSITIONS this is the whole machine: a state's work, then the next state by its outcome.
STATE_WORK: dict[UpdateState, Callable[[UpdateMachine], None]] = {
    "download": UpdateMachine._run_download,
    "verify": UpdateMachine._run_verify,
    "install": UpdateMachine._run_install,
    "activate": UpdateMachine._run_activate,
    "health-check": UpdateMachine._run_health_check,
    "commit": UpdateMachine._run_commit,
    "rollback": UpdateMachine._run_rollback,
}


def version_key(version: str) -> tuple[object, ...]:
    """Order of bundle versions: numeric parts as numbers, `1.0.0-rc1` before `1.0.0`, `+build`
    ignored, a leading `v` dropped; any two versions compare (text after numbers)."""
    main = version.removeprefix("v").removeprefix("V").partition("+")[0]
    release, dash, pre = main.partition("-")
    return (_version_parts(release), 0 if dash else 1, _version_parts(pre))


def assert_present(target: BundleRef | None) -> BundleRef:
    if target is None:
        raise InvalidBundle("update record has no target bundle", "the update record is corrupt")
    return target


def assert_target(manifest: Manifest, target: BundleRef | None) -> None:
    if target is not None and manifest.digest != target.digest:
        raise InvalidBundle(
            f"bundle {manifest.ref} has digest {manifest.digest}, the server asked for {target.digest}",
            "the server's bundle reference does not match its content",
        )
