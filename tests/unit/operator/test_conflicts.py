"""Who else writes our fields (managedFields), and how often the operator answers them (pure)."""

from __future__ import annotations

from typing import Any

from recmodel_operator.conflicts import BASE_DELAY, WINDOW_SECONDS, Contests
from recmodel_operator.drift import contains, differences
from recmodel_operator.writers import describe, writers_of

KEY = ("deployments", "shop", "ranker-predictor")

DESIRED: dict[str, Any] = {
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "args": ["--role=all"],
                        "env": [{"name": "MODE", "value": "fast"}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                    }
                ]
            }
        },
    }
}


def _live(replicas: int = 2, mode: str = "fast", args: str = "--role=all") -> dict[str, Any]:
    container = {
        "name": "server",
        "args": [args],
        "env": [{"name": "MODE", "value": mode}, {"name": "EXTRA", "value": "1"}],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
    }
    return {"spec": {"replicas": replicas, "template": {"spec": {"containers": [container]}}}}


def _entry(manager: str, fields: dict[str, Any], subresource: str = "") -> dict[str, Any]:
    entry = {"manager": manager, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields}
    return {**entry, "subresource": subresource} if subresource else entry


ENV_FIELDS = {
    "f:spec": {
        "f:template": {
            "f:spec": {
                "f:containers": {'k:{"name":"server"}': {"f:env": {'k:{"name":"MODE"}': {".": {}, "f:value": {}}}}}
            }
        }
    }
}


def test_differences_name_the_fields_that_differ_and_nothing_else() -> None:
    assert contains(_live(), DESIRED)
    assert list(differences(_live(), DESIRED)) == []
    paths = [describe(p) for p in differences(_live(replicas=5, mode="slow", args="--role=x"), DESIRED)]
    assert paths == [
        "spec.replicas",
        "spec.template.spec.containers[server].args",
        "spec.template.spec.containers[server].env[MODE].value",
    ]


def test_the_manager_holding_a_differing_field_is_named_with_the_field() -> None:
    live = _live(replicas=5, mode="slow")
    managed = [
        _entry("recmodel-operator", {"f:spec": {"f:replicas": {}}}),
        _entry("intruder", {"f:spec": {"f:replicas": {}}}),
        _entry("kubectl-edit", ENV_FIELDS),
        _entry("kube-controller-manager", {"f:status": {"f:replicas": {}}}, subresource="status"),
        _entry("someone", {"f:metadata": {"f:labels": {"f:team": {}}}}),
    ]
    assert writers_of(managed, differences(live, DESIRED)) == {
        "intruder": ["spec.replicas"],
        "kubectl-edit": ["spec.template.spec.containers[server].env[MODE].value"],
    }


def test_a_writer_of_an_unrelated_entry_is_not_named() -> None:
    other_env = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"server"}': {"f:env": {}}}}}}}
    other_env["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"server"}']["f:env"] = {
        'k:{"name":"EXTRA"}': {".": {}, "f:value": {}}
    }
    assert writers_of([_entry("helper", other_env)], differences(_live(mode="slow"), DESIRED)) == {}


def test_port_entries_match_by_their_merge_key_with_the_default_protocol() -> None:
    desired = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    live = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}]}}
    fields = {"f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {"f:targetPort": {}}}}}
    assert writers_of([_entry("porter", fields)], differences(live, desired)) == {
        "porter": ["spec.ports[http].targetPort"]
    }


def test_one_change_is_put_back_at_once_the_same_writer_again_waits_a_doubling_delay() -> None:
    contests = Contests()
    writers = {"intruder": ["spec.replicas"]}
    restores = []
    for second in range(60):  # the other writer changes the field once a second for a minute
        if contests.changed_by_others(KEY, writers, float(second)) == 0:
            restores.append(second)
    assert restores == [0, BASE_DELAY, 3 * BASE_DELAY]
    [(_, contest)] = contests.contested([KEY])
    assert contest.writers == writers


def test_changes_by_different_writers_are_each_put_back_at_once() -> None:
    contests = Contests()
    assert contests.changed_by_others(KEY, {"kubectl": ["spec.replicas"]}, 0.0) == 0
    assert contests.changed_by_others(KEY, {"kubectl-patch": ["spec.template.spec.containers[server].args"]}, 1.0) == 0
    assert contests.contested([KEY]) == []


def test_a_contest_ends_once_the_child_stays_ours_for_the_window() -> None:
    contests = Contests()
    for second in range(2):
        contests.changed_by_others(KEY, {"intruder": ["spec.replicas"]}, float(second))
    assert contests.contested([KEY])
    assert contests.next_look([KEY], 1.0) == BASE_DELAY - 1
    contests.changed_by_others(KEY, {}, BASE_DELAY)  # restored
    contests.unchanged(KEY, BASE_DELAY + 1)
    assert contests.contested([KEY]), "too soon"
    assert contests.next_look([KEY], BASE_DELAY + 1) == WINDOW_SECONDS - 1, "the contest's end, not the next delay"
    contests.unchanged(KEY, BASE_DELAY + WINDOW_SECONDS)
    assert contests.contested([KEY]) == []
    assert contests.changed_by_others(KEY, {"intruder": ["spec.replicas"]}, 100.0) == 0, "a later edit: at once"


def test_edits_far_apart_never_start_a_contest() -> None:
    contests = Contests()
    for minute in range(10):
        assert contests.changed_by_others(KEY, {"person": ["spec.replicas"]}, minute * 60.0) == 0
    assert contests.contested([KEY]) == []
