"""prefect.artifacts: created in runs, recorded as the run's events, the latest of a key."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from flowbus import flow, task
from flowbus.artifacts import (
    Artifact,
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from flowbus.engine.store import store_from_url
from flowbus.views.run_detail import run_detail


@task
def report(rows: list[dict[str, object]]) -> UUID:
    create_table_artifact(rows, key="daily-rows", description="rows loaded")
    return create_markdown_artifact(f"# Loaded\n**{len(rows)}** rows", key="daily-report")


@flow
def pipeline(rows: list[dict[str, object]]) -> str:
    report(rows)
    progress = create_progress_artifact(0.0, key="load-progress")
    update_progress_artifact(progress, 50)
    update_progress_artifact(progress, 100, description="done")
    create_link_artifact("https://example.org/dash", "dashboard")
    create_image_artifact("https://example.org/chart.png", description="chart")
    from flowbus import runtime

    return str(runtime.flow_run.id)


def _detail(run_id: str) -> dict[str, object]:
    async def read() -> dict[str, object]:
        async with store_from_url() as store:
            run = await store.get_flow_run(run_id)
            assert run is not None
            return await run_detail(store, run)

    return asyncio.run(read())


def test_artifacts_are_recorded_with_their_run_and_found_by_key() -> None:
    run_id = pipeline([{"id": 1, "city": "Lyon"}, {"id": 2, "city": "Oslo"}])
    artifacts = _detail(run_id)["artifacts"]
    assert [(a["key"], a["type"]) for a in artifacts] == [  # type: ignore[index]
        ("daily-rows", "table"),
        ("daily-report", "markdown"),
        ("load-progress", "progress"),
        (None, "link"),
        (None, "image"),
    ]
    progress = artifacts[2]  # type: ignore[index]
    assert progress["data"] == 100 and progress["description"] == "done"
    assert artifacts[3]["data"] == {"link": "https://example.org/dash", "link_text": "dashboard"}  # type: ignore[index]

    latest = Artifact.get("daily-report")
    assert latest.type == "markdown" and latest.data.startswith("# Loaded")
    assert latest.flow_run_id == run_id
    assert Artifact.get("load-progress").data == 100
    assert Artifact.get("no-such-key") is None

    second = pipeline([{"id": 3, "city": "Kyiv"}])
    assert Artifact.get("daily-rows").data == [{"id": 3, "city": "Kyiv"}]
    assert Artifact.get("daily-rows").flow_run_id == second


def test_artifact_keys_are_checked() -> None:
    @flow
    def bad_key() -> None:
        create_markdown_artifact("x", key="Not Valid")

    with pytest.raises(ValueError, match="artifact key"):
        bad_key()
    with pytest.raises(ValueError, match="artifact key"):
        create_markdown_artifact("outside any run", key="Not Valid Either")


def test_the_store_rebuilds_the_latest_artifact_of_a_key() -> None:
    pipeline([{"id": 1}])

    async def rebuild() -> list[str]:
        async with store_from_url() as store:
            await store.rebuild_projections()
            return await store.verify_projections()

    assert asyncio.run(rebuild()) == []
    assert Artifact.get("daily-rows").data == [{"id": 1}]
