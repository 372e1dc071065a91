from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.manager import MediaAggregationManager
from ryu_apps.store import SqliteLedger


def test_a_restart_from_sqlite_loses_nothing(tmp_path, line):
    path = str(tmp_path / "ledger.sqlite")
    manager = MediaAggregationManager(line, ledger=SqliteLedger(path))
    manager.create_aggregate("ab", "site-a", "site-b", 500, preemption=True)
    for i in range(4):
        manager.admit(AdmissionRequest(f"c{i}", "site-a", "site-b", MediaSpec("pcmu")), float(i))
    manager.attach_media("c1", MediaEndpoint("10.1.0.1", 4000), MediaEndpoint("10.2.0.1", 5000), 9.0)
    manager.release("c2", 10.0)

    restarted = MediaAggregationManager(line, ledger=SqliteLedger(path))
    assert restarted.aggregates() == manager.aggregates()
    assert restarted.calls() == manager.calls()
    assert restarted.used_kbps("ab") == manager.used_kbps("ab") == 3 * 91
    assert restarted.expected_plan() == manager.expected_plan()
    # the same decisions afterwards: the freed tags and serials are reused identically
    request = AdmissionRequest("c9", "site-a", "site-b", MediaSpec("pcmu"))
    assert restarted.admit(request, 11.0) == manager.admit(request, 11.0)
    assert restarted.call("c9") == manager.call("c9")
    assert isinstance(restarted.admit(AdmissionRequest("cX", "site-a", "site-b", MediaSpec("pcmu")), 12.0),
                      Admitted)
