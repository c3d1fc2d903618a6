from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgewise.agent.update import STATE_WORK, TRANSITIONS, UpdateRecord
from edgewise.core.errors import ServiceUnavailable
from tests.agent.conftest import ref_for

GOOD_PATH = ["download", "verify", "install", "activate", "health-check", "commit", "idle"]


def install(machine, bundles, name: str) -> None:
    archive, manifest = bundles[name]
    assert machine.offer(ref_for(archive, manifest), "dep-1")
    machine.run_until_rest()


def test_transition_table_covers_every_working_state() -> None:
    working = {"download", "verify", "install", "activate", "health-check", "commit", "rollback"}
    assert {state for state, _ in TRANSITIONS} == working
    assert all((state, outcome) in TRANSITIONS for state in working for outcome in ("ok", "error"))
    assert set(STATE_WORK) == working  # every working state has its work, looked up in one table


def test_good_bundle_walks_every_state_and_serves(tmp_path, make_machine, bundles) -> None:
    seen: list[str] = []
    machine = make_machine(tmp_path, on_transition=lambda r: seen.append(r.state))
    install(machine, bundles, "v1")
    assert seen == GOOD_PATH
    assert machine.slots.digest_of("current") == bundles["v1"][1].digest
    assert not (tmp_path / "downloads" / "x").exists()
    # the same target again is a no-op
    assert not machine.offer(ref_for(*bundles["v1"]))


def test_second_update_keeps_previous_and_prunes_older(tmp_path, make_machine, bundles) -> None:
    machine = make_machine(tmp_path)
    for name in ("v1", "v2", "scratch"):
        install(machine, bundles, name)
    assert machine.slots.digest_of("current") == bundles["scratch"][1].digest
    assert machine.slots.digest_of("previous") == bundles["v2"][1].digest
    assert len(list((tmp_path / "slots").iterdir())) == 2


def test_bad_signature_is_never_activated(tmp_path, make_machine, bundles) -> None:
    activations: list[int] = []
    machine = make_machine(tmp_path, on_activate=lambda: activations.append(1))
    install(machine, bundles, "v1")
    activations.clear()
    install(machine, bundles, "bad-sig")
    assert machine.record.state == "failed"
    assert "untrusted key" in (machine.record.error or "")
    assert machine.record.history[-3:] == ["download", "verify", "failed"]
    assert activations == []
    assert machine.slots.digest_of("current") == bundles["v1"][1].digest
    assert not (tmp_path / "slots" / bundles["bad-sig"][1].digest.split(":")[1]).exists()


def test_digest_mismatch_is_refused(tmp_path, make_machine, bundles) -> None:
    machine = make_machine(tmp_path)
    archive, manifest = bundles["v1"]
    lying = ref_for(archive, manifest).model_copy(update={"digest": bundles["v2"][1].digest})
    machine._fetch = lambda target, dest: dest.write_bytes(archive.read_bytes())  # serves v1 for v2's digest
    machine.offer(lying)
    machine.run_until_rest()
    assert machine.record.state == "failed" and "digest" in (machine.record.error or "")


@pytest.mark.parametrize("name, reason", [("broken", "on error rate: 3 of 3 probe frames failed (100%, limit"),
                                          ("slow", "on latency: p95")])
def test_unhealthy_model_is_rolled_back(tmp_path, make_machine, bundles, name, reason) -> None:
    machine = make_machine(tmp_path)
    install(machine, bundles, "v1")
    install(machine, bundles, name)
    assert machine.record.history[-4:] == ["activate", "health-check", "rollback", "failed"]
    assert reason in (machine.record.error or "")
    assert machine.slots.digest_of("current") == bundles["v1"][1].digest
    # a failed digest is not retried, but a new one is
    assert not machine.offer(ref_for(*bundles[name]))
    install(machine, bundles, "v2")
    assert machine.slots.digest_of("current") == bundles["v2"][1].digest


def test_network_failure_keeps_the_state_for_a_retry(tmp_path, make_machine, bundles) -> None:
    def offline(target, dest):
        raise ServiceUnavailable("server down")

    machine = make_machine(tmp_path, download=offline)
    machine.offer(ref_for(*bundles["v1"]))
    with pytest.raises(ServiceUnavailable):
        machine.run_until_rest()
    assert machine.record.state == "download"
    assert UpdateRecord.model_validate(json.loads((tmp_path / "update.json").read_text())).state == "download"


def test_boot_loop_in_health_check_rolls_back(tmp_path, make_machine, bundles) -> None:
    machine = make_machine(tmp_path)
    install(machine, bundles, "v1")
    archive, manifest = bundles["v2"]
    machine.offer(ref_for(archive, manifest))
    for _ in range(4):  # download .. activate, stop before health-check runs
        machine.step()
    assert machine.record.state == "health-check"
    for boot in range(1, 5):
        restarted = make_machine(tmp_path, boot_loop_limit=3)
        restarted.recover()
        if boot <= 3:
            assert restarted.record.state == "health-check" and restarted.record.boots_in_state == boot
    assert restarted.record.state == "rollback" and "boot loop" in (restarted.record.error or "")
    restarted.run_until_rest()
    assert restarted.slots.digest_of("current") == bundles["v1"][1].digest


CRASH_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from edgewise.agent.fault_injection import crash_hook_from_env
from edgewise.agent.update import UpdateMachine
from edgewise.core.signing import PublicKey
from edgewise.core.wire import BundleRef
import shutil
archive = Path({archive!r})
def download(target, dest):
    shutil.copyfile(archive, dest)
    return dest
def health(bundle_dir, manifest):
    if {unhealthy!r}:
        raise RuntimeError("model is unhealthy")
machine = UpdateMachine(Path({data!r}), [PublicKey.from_b64({key!r})], download, health,
                        after_persist=crash_hook_from_env({{"EDGEWISE_AGENT_CRASH_IN_STATE": {state!r}}}))
machine.offer(BundleRef.model_validate_json({ref!r}))
machine.run_until_rest()
"""


@pytest.mark.reliability
@pytest.mark.parametrize("state", ["download", "verify", "install", "activate", "health-check", "commit"])
def test_kill_9_in_every_state_recovers_to_a_working_model(tmp_path, make_machine, bundles, publisher, state) -> None:
    machine = make_machine(tmp_path)
    install(machine, bundles, "v1")
    archive, manifest = bundles["v2"]
    script = CRASH_SCRIPT.format(
        root=str(Path(__file__).parents[2]), archive=str(archive), data=str(tmp_path), key=publisher.public.b64,
        state=state, ref=ref_for(archive, manifest).model_dump_json(), unhealthy=False,
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert json.loads((tmp_path / "update.json").read_text())["state"] == state

    restarted = make_machine(tmp_path)
    restarted.recover()
    restarted.run_until_rest()
    assert restarted.record.state == "idle", restarted.record
    assert restarted.slots.digest_of("current") == manifest.digest
    assert restarted.record.history[-1] == "idle"
    from edgewise.agent.pipeline import Pipeline
    from tests.agent.conftest import probe_frames

    served = Pipeline.from_dir(restarted.slots.pointer("current"), ["cpu"], ["CPUExecutionProvider"])
    assert served.run(probe_frames()[0]).label in {"ok", "scratch", "hole", "crack"}


@pytest.mark.reliability
def test_kill_9_during_rollback_ends_on_the_previous_model(tmp_path, make_machine, bundles, publisher) -> None:
    machine = make_machine(tmp_path)
    install(machine, bundles, "v1")
    archive, manifest = bundles["broken"]
    script = CRASH_SCRIPT.format(
        root=str(Path(__file__).parents[2]), archive=str(archive), data=str(tmp_path), key=publisher.public.b64,
        state="rollback", ref=ref_for(archive, manifest).model_dump_json(), unhealthy=True,
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    restarted = make_machine(tmp_path)
    restarted.recover()
    restarted.run_until_rest()
    assert restarted.record.state == "failed"
    assert restarted.slots.digest_of("current") == bundles["v1"][1].digest
    assert manifest.digest in restarted.record.failed_digests


def test_a_full_disk_during_install_fails_cleanly_and_keeps_serving(tmp_path, make_machine, bundles,
                                                                     monkeypatch) -> None:
    import errno
    import os

    machine = make_machine(tmp_path)
    install(machine, bundles, "v1")
    real_replace = os.replace

    def full_disk(src, dst):
        if "staging" in str(src):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr("edgewise.agent.update.os.replace", full_disk)
    install(machine, bundles, "v2")
    assert machine.record.history[-4:] == ["download", "verify", "install", "failed"]
    assert "No space left" in (machine.record.error or "")
    assert machine.slots.digest_of("current") == bundles["v1"][1].digest


def test_an_older_signed_version_is_refused_unless_an_operator_rolled_back(tmp_path, make_machine, bundles) -> None:
    machine = make_machine(tmp_path)
    install(machine, bundles, "v1")
    install(machine, bundles, "v2")
    older = ref_for(*bundles["v1"])
    machine.offer(older.model_copy(update={"version": "v9"}))  # what the reference claims is not what counts
    machine.run_until_rest()
    assert machine.record.state == "failed" and "anti-rollback" in (machine.record.error or "")
    assert machine.slots.digest_of("current") == bundles["v2"][1].digest
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").iterdir())
    assert not machine.offer(older)  # refused once: not downloaded again on every poll
    assert machine.offer(older, "dep-rollback", allow_downgrade=True)
    machine.run_until_rest()
    assert machine.slots.digest_of("current") == bundles["v1"][1].digest


@pytest.mark.parametrize("older, newer", [("1.0.0", "1.0.1"), ("1.9.0", "1.10.0"), ("1.0.0-rc1", "1.0.0"),
                                          ("v1", "v2"), ("2", "10"), ("1.0.0", "1.0.0-scratch.1")[::-1]])
def test_versions_order_as_releases_do(older: str, newer: str) -> None:
    from edgewise.agent.update import version_key

    assert version_key(older) < version_key(newer)
