"""The published contract under fuzzing: schemathesis reads /openapi.json from a live server and sends
every operation the document's examples, boundary cases and generated requests, both valid ones and ones
that break the schema. Every check it has judges each answer: no 5xx, a documented status, content type,
headers and body, invalid data refused and valid data taken, and no answer without a key where one is
required. Once with a key holding every scope, once with no key at all (401, documented, for every
keyed operation)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, is_check_class, load_all_checks
from schemathesis.generation.case import Case
from schemathesis.schemas import BaseSchema

from tests.live import AUTH, TEST_KEY, LiveServer, live_server

# Generated cases per operation (valid and invalid ones mixed); with the examples and boundary cases
# this makes over MIN_CASES in each of the two runs (asserted), in about 30 s each on two busy cores.
MAX_EXAMPLES = 100
MIN_CASES = 1_000
SEED = 20_260_301
# Spelt as the document's security scheme spells it: the `ignored_auth` check takes the header off by
# that exact name to see the request refused without it.
KEY = {"Authorization": f"Bearer {TEST_KEY}"}
# Every check the installed schemathesis has, besides the ones that judge a whole run (check classes).
load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if not is_check_class(check)]


# Every operation of the document, and whether it needs a key (tests/test_openapi.py checks the document).
OPERATIONS = {
    "POST /events": True,
    "POST /score": True,
    "GET /users/{user_id}/features": True,
    "DELETE /users/{user_id}": True,
    "GET /model": True,
    "GET /metrics": True,
    "POST /admin/model": True,
    "POST /admin/model/shadow": True,
    "DELETE /admin/model/shadow": True,
    "GET /model/drift": True,
    "GET /healthz": False,
    "GET /readyz": False,
}


@dataclass
class FuzzRun:
    server: LiveServer
    headers: dict[str, str]
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # "METHOD /path", status


@pytest.fixture(params=["key-with-every-scope", "no-key"])
def fuzz_run(redis_url: str, request: pytest.FixtureRequest) -> Iterator[FuzzRun]:
    """The live server a run fuzzes; once the run is over, how many cases it sent and what they met."""
    keyed = request.param == "key-with-every-scope"
    with live_server(redis_url) as server:
        run = FuzzRun(server, KEY if keyed else {})
        started = time.monotonic()
        yield run
        took = time.monotonic() - started
    total = sum(run.sent.values())
    print(f"\n{request.param}: {total} cases in {took:.0f} s over {len(run.sent)} operations")
    assert total >= MIN_CASES and len(run.sent) == len(OPERATIONS), run.sent
    for label, secured in OPERATIONS.items():
        answered = {status for (sent, status) in run.statuses if sent == label}
        if keyed or not secured:  # each operation did its work for valid requests
            assert 200 in answered, (label, answered)
        else:  # the key is checked before anything else
            assert answered == {401}, (label, answered)


@pytest.fixture
def contract(fuzz_run: FuzzRun, request: pytest.FixtureRequest) -> BaseSchema:
    # schemathesis' pytest plugin renames the test item per operation through `_nodeid`, which pytest 9.2
    # no longer has; giving it back keeps the plugin's reporting working.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    document = httpx.get(f"{fuzz_run.server.url}/openapi.json", headers=AUTH).raise_for_status().json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=fuzz_run.server.url)
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
    )
    schema.config.seed = SEED
    return schema


schema = schemathesis.pytest.from_fixture("contract")


@schema.parametrize()
def test_the_contract_holds_under_fuzzing(case: Case, fuzz_run: FuzzRun) -> None:
    fuzz_run.sent[case.operation.label] += 1
    response = case.call_and_validate(headers=fuzz_run.headers, checks=ALL_CHECKS)
    # By the method sent: the boundary cases also try methods the path does not take (405).
    fuzz_run.statuses[f"{response.request.method} {case.operation.path}", response.status_code] += 1
