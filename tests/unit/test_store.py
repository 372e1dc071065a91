import sqlite3
from dataclasses import replace

import pytest

from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.calls import CallState, MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.errors import StoreUnavailable
from ryu_apps.core.manager import MediaAggregationManager
from ryu_apps.core.network import Topology
from ryu_apps.core.store import DeleteCall, PutCall
from ryu_apps.store import SqliteLedger

EPOCH = 1_764_000_000.0     # wall-clock seconds: admission times are the controller's own clock


def two_ports(line: Topology) -> Topology:
    """site-a with two access ports: where its terminals are is learned, not configured."""
    site_a, *others = line.communities
    return Topology(line.switches, line.links, (replace(site_a, access_ports=(1, 4)), *others))


def test_a_restart_from_sqlite_loses_nothing(tmp_path, line):
    line = two_ports(line)
    path = str(tmp_path / "ledger.sqlite")
    manager = MediaAggregationManager(line, ledger=SqliteLedger(path))
    manager.create_aggregate("ab", "site-a", "site-b", 500, preemption=True)
    for i in range(4):
        manager.admit(AdmissionRequest(f"c{i}", "site-a", "site-b", MediaSpec("pcmu")), EPOCH + i)
    manager.attach_media("c1", MediaEndpoint("10.1.0.1", 4000), MediaEndpoint("10.2.0.1", 5000), EPOCH + 9)
    manager.save_dialog("c1", {"caller": {"tag": "a1", "cseq": 3}, "callee": {"tag": "b7"}})
    assert manager.learn_terminal("site-a", "10.1.0.77", 4, EPOCH + 9).value == "learned"
    manager.release("c2", EPOCH + 10)

    restarted = MediaAggregationManager(line, ledger=SqliteLedger(path), now=EPOCH + 20)
    assert restarted.aggregates() == manager.aggregates()
    # a call whose flows were planned comes back active (its flows are on the switches and are
    # reconciled when they connect); one without media keeps waiting for it
    assert restarted.call("c1").state is CallState.ACTIVE and manager.call("c1").state is CallState.INSTALLING
    assert [replace(c, state=CallState.ACTIVE) for c in restarted.calls()] == [
        replace(c, state=CallState.ACTIVE) for c in manager.calls()]
    assert [c.state for c in restarted.calls() if c.call_id != "c1"] == [CallState.ADMITTED] * 2
    assert restarted.call("c1").dialog == {"caller": {"tag": "a1", "cseq": 3}, "callee": {"tag": "b7"}}
    assert [c.admitted_at for c in restarted.calls()] == [EPOCH, EPOCH + 1, EPOCH + 3]   # wall clock, kept
    assert restarted.location("site-a", "10.1.0.77") == 4
    assert restarted.used_kbps("ab") == manager.used_kbps("ab") == 3 * 91
    assert restarted.expected_plan() == manager.expected_plan()
    # the same decisions afterwards: the freed tags and serials are reused identically
    request = AdmissionRequest("c9", "site-a", "site-b", MediaSpec("pcmu"))
    assert restarted.admit(request, EPOCH + 21) == manager.admit(request, EPOCH + 21)
    assert restarted.call("c9") == manager.call("c9")
    assert isinstance(restarted.admit(AdmissionRequest("cX", "site-a", "site-b", MediaSpec("pcmu")), EPOCH + 22),
                      Admitted)


def test_a_commit_is_all_or_nothing(tmp_path, line):
    path = str(tmp_path / "ledger.sqlite")
    ledger = SqliteLedger(path)
    manager = MediaAggregationManager(line, ledger=ledger)
    manager.create_aggregate("ab", "site-a", "site-b", 500)
    manager.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), EPOCH)
    good = manager.call("c1")
    # the second write breaks the schema's NOT NULL: the first must not land either
    broken = replace(good, call_id="c2", aggregate_id=None)   # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable, match="refused the change"):
        ledger.commit([DeleteCall("c1"), PutCall(broken)])
    assert [c.call_id for c in SqliteLedger(path).load().calls] == ["c1"]


def test_an_unwritable_ledger_refuses_admission_and_changes_nothing(tmp_path, line):
    path = str(tmp_path / "ledger.sqlite")
    ledger = SqliteLedger(path)
    manager = MediaAggregationManager(line, ledger=ledger)
    manager.create_aggregate("ab", "site-a", "site-b", 500)
    manager.drain()
    before = manager.snapshot()
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")               # another writer holds the database
    ledger._db.execute("PRAGMA busy_timeout=10")
    decision = manager.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), EPOCH)
    assert decision.reason.value == "store-unavailable" and "locked" in decision.detail
    assert manager.snapshot() == before and not manager.drain()
    blocker.execute("ROLLBACK")
    assert isinstance(manager.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), EPOCH), Admitted)
    assert [c.call_id for c in SqliteLedger(path).load().calls] == ["c1"]
