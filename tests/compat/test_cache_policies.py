"""prefect.cache_policies and task caching, as Prefect's caching guide shows them."""

from __future__ import annotations

from datetime import timedelta

from flowbus import flow, task
from flowbus.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CachePolicy,
    CompoundCachePolicy,
)

calls: list[str] = []


def test_persist_result_with_the_default_policy_caches_within_a_flow_run() -> None:
    @task(persist_result=True)
    def add(x: int, y: int) -> int:
        calls.append("add")
        return x + y

    @flow
    def pipeline() -> list[str]:
        return [add(1, 2, return_state=True).name for _ in range(2)]

    calls.clear()
    assert pipeline() == ["Completed", "Cached"]
    assert pipeline() == ["Completed", "Cached"]  # RUN_ID is part of DEFAULT: a new run runs
    assert calls == ["add", "add"]


def test_without_persistence_nothing_is_cached() -> None:
    @task
    def add(x: int, y: int) -> int:
        return x + y

    @flow
    def pipeline() -> list[str]:
        return [add(1, 2, return_state=True).name for _ in range(2)]

    assert pipeline() == ["Completed", "Completed"]


def test_inputs_policy_is_shared_between_tasks_and_across_runs() -> None:
    @task(cache_policy=INPUTS)
    def double(x: int) -> int:
        return x * 2

    @task(cache_policy=INPUTS)
    def triple(x: int) -> int:
        return x * 3

    @flow
    def pipeline(x: int) -> tuple[str, str, int]:
        first = double(x, return_state=True)
        second = triple(x, return_state=True)
        return first.name, second.name, second.result()

    # INPUTS keys hold only the inputs: triple(5) finds double(5)'s result, as Prefect warns.
    assert pipeline(5) == ("Completed", "Cached", 10)
    assert pipeline(5) == ("Cached", "Cached", 10)
    assert pipeline(6) == ("Completed", "Cached", 12)


def test_excluding_an_input_and_refresh_cache() -> None:
    ran: list[bool] = []

    @task(cache_policy=INPUTS - "debug")
    def fetch(url: str, debug: bool = False) -> str:
        ran.append(debug)
        return url.upper()

    @task(cache_policy=INPUTS - "debug", refresh_cache=True)
    def fetch_fresh(url: str, debug: bool = False) -> str:
        ran.append(debug)
        return url.upper()

    @flow
    def pipeline() -> list[str]:
        a = fetch("x", debug=False, return_state=True)
        b = fetch("x", debug=True, return_state=True)
        c = fetch_fresh("x", return_state=True)
        return [a.name, b.name, c.name]

    assert pipeline() == ["Completed", "Cached", "Completed"]
    assert ran == [False, False]


def test_policies_combine_and_compute_keys() -> None:
    combined = INPUTS + TASK_SOURCE + RUN_ID + FLOW_PARAMETERS
    assert isinstance(combined, CompoundCachePolicy)
    assert len(combined.policies) == 4
    assert INPUTS + NO_CACHE is INPUTS and NO_CACHE + INPUTS is INPUTS
    assert isinstance(DEFAULT, CompoundCachePolicy)
    without = combined - "x"
    assert isinstance(without, CompoundCachePolicy)
    key_a = (INPUTS - "x").compute_key(None, {"x": 1, "y": 2}, {})
    key_b = (INPUTS - "x").compute_key(None, {"x": 9, "y": 2}, {})
    assert key_a == key_b and key_a != INPUTS.compute_key(None, {"x": 1, "y": 2}, {})
    assert NO_CACHE.compute_key(None, {"x": 1}, {}) is None


def test_a_custom_policy_and_no_cache() -> None:
    class FirstLetter(CachePolicy):
        def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):  # type: ignore[no-untyped-def]
            return inputs["word"][0]

    @task(cache_policy=FirstLetter())
    def shout(word: str) -> str:
        return word.upper()

    @task(cache_policy=NO_CACHE, persist_result=True)
    def never(word: str) -> str:
        return word

    @flow
    def pipeline() -> list[str]:
        return [shout("apple"), shout("avocado"), never("a", return_state=True).name,
                never("a", return_state=True).name]  # fmt: skip

    assert pipeline() == ["APPLE", "APPLE", "Completed", "Completed"]


def test_flow_parameters_policy_and_expiration() -> None:
    @task(cache_policy=FLOW_PARAMETERS, cache_expiration=timedelta(hours=1))
    def report(label: str) -> str:
        calls.append(label)
        return label

    @flow
    def pipeline(day: str) -> str:
        return report(day, return_state=True).name

    calls.clear()
    assert [pipeline("mon"), pipeline("mon"), pipeline("tue")] == ["Completed", "Cached",
                                                                    "Completed"]  # fmt: skip
    assert calls == ["mon", "tue"]


def test_cache_expiration_ends_a_cached_result() -> None:
    @task(cache_policy=INPUTS, cache_expiration=timedelta(seconds=-1))
    def stale(x: int) -> int:
        return x

    @flow
    def pipeline() -> list[str]:
        return [stale(1, return_state=True).name, stale(1, return_state=True).name]

    assert pipeline() == ["Completed", "Completed"]
