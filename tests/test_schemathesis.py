"""Schema-driven fuzzing (schemathesis) of every route of the running service, over real HTTP on loopback:
no 5xx, and every error is JSON with a readable ``detail`` message."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from test_api import running_server  # noqa: E402

from index.settings import Settings  # noqa: E402

MAX_EXAMPLES = 15  # per operation and generation mode


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, sample_index: Path, encoder) -> Iterator[str]:
    from service.answering.engine import Engine
    from service.web.api import create_app

    root = tmp_path_factory.mktemp("schemathesis") / "index"
    shutil.copytree(sample_index, root, ignore=shutil.ignore_patterns("conversations.sqlite*"))
    settings_ = Settings(index_dir=root, rate_limit_per_minute=1_000_000)
    engine = Engine(settings=settings_, index_root=root, encoder=encoder)
    with running_server(create_app(settings_, engine)) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(base_url: str):
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


def check_response(case, response) -> None:
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])  # schemathesis: header -> list of values
        assert content_type[0].startswith("application/json"), where
        detail = response.json().get("detail")
        assert isinstance(detail, str) and detail.strip(), where
        assert "Traceback" not in detail, where


def fuzz(operation, mode: str, calls: Counter[str], statuses: Counter[int]) -> None:
    """Send MAX_EXAMPLES generated requests to one operation; check every response."""
    from schemathesis.generation.modes import GenerationMode

    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    )
    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    def run(case) -> None:
        response = case.call(timeout=60)
        calls[label] += 1
        statuses[response.status_code] += 1
        check_response(case, response)

    try:
        run()
    except Unsatisfiable:
        assert mode == "negative", label
        calls[f"{label} (no invalid input possible)"] += 0


# schemathesis' own pytest loader (``schemathesis.pytest.from_fixture``) fails on pytest 9 (it reads the removed
# ``Function._nodeid``), so each operation's strategy is driven by hypothesis directly.
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_route_answers_without_5xx_and_errors_are_json(api_schema, mode: str) -> None:
    calls: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        fuzz(operation, mode, calls, statuses)
    total = sum(calls.values())
    print(f"\nschemathesis {mode}: {total} requests over {len(calls)} operations; statuses {dict(statuses)}")
    for label, count in sorted(calls.items()):
        print(f"  {count:4d}  {label}")
    assert len(calls) == len(operations)  # every operation was exercised (or has no invalid input at all)
