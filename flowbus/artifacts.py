"""Artifacts under Prefect's module name (``prefect.artifacts``): reports a run publishes.

    from flowbus.artifacts import create_markdown_artifact, create_table_artifact

    @task
    def report(rows: list[dict]) -> None:
        create_table_artifact(rows, key="daily-rows", description="rows loaded today")
        create_markdown_artifact(f"# Loaded\\n{len(rows)} rows", key="daily-report")

They are recorded as events of the run: ``flowbus runs show RUN_ID`` lists them, the API serves
them (``GET /api/v1/runs/{id}/artifacts``, ``GET /api/v1/artifacts/{key}`` for the latest of a
key) and the run's page in the UI renders them. ``Artifact.get(key)`` reads the latest of a key.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flowbus._dispatch import dispatch
from flowbus.engine.artifacts import ArtifactView, latest, publish, update


def create_markdown_artifact(
    markdown: str, key: str | None = None, description: str | None = None
) -> UUID:
    """Publish markdown (rendered as markdown in the UI); returns the artifact's id."""
    return UUID(publish("markdown", str(markdown), key, description))


def create_table_artifact(
    table: dict[str, list[Any]] | list[dict[str, Any]] | list[list[Any]],
    key: str | None = None,
    description: str | None = None,
) -> UUID:
    """Publish a table: a dict of columns, a list of row dicts, or a list of row lists."""
    if not isinstance(table, dict | list):
        raise TypeError("a table artifact is a dict of columns or a list of rows")
    return UUID(publish("table", table, key, description))


def create_link_artifact(
    link: str, link_text: str | None = None, key: str | None = None, description: str | None = None
) -> UUID:
    """Publish a link (shown as ``link_text`` when given)."""
    return UUID(publish("link", {"link": link, "link_text": link_text}, key, description))


def create_progress_artifact(
    progress: float, key: str | None = None, description: str | None = None
) -> UUID:
    """Publish a progress bar (0 to 100); move it on with ``update_progress_artifact``."""
    return UUID(publish("progress", _percent(progress), key, description))


def update_progress_artifact(
    artifact_id: UUID | str, progress: float, description: str | None = None
) -> UUID:
    """Move a progress artifact to ``progress`` (0 to 100)."""
    return UUID(update(str(artifact_id), _percent(progress), description))


def create_image_artifact(
    image_url: str, key: str | None = None, description: str | None = None
) -> UUID:
    """Publish an image by its URL."""
    return UUID(publish("image", image_url, key, description))


def _percent(progress: float) -> float:
    value = float(progress)
    if not 0 <= value <= 100:
        raise ValueError(f"progress {value} is not between 0 and 100")
    return value


class Artifact:
    """Prefect's ``Artifact`` class: ``Artifact.get(key)`` gives the latest artifact of a key
    (sync, or awaited from async code); ``Artifact(type=..., data=..., key=...).create()``."""

    def __init__(
        self, type: str, data: Any, key: str | None = None, description: str | None = None
    ) -> None:
        self.type = type
        self.data = data
        self.key = key
        self.description = description

    def create(self) -> UUID:
        return UUID(publish(self.type, self.data, self.key, self.description))

    @classmethod
    async def aget(cls, key: str) -> ArtifactView | None:
        from flowbus.engine.documents import using_store
        from flowbus.engine.run_documents import run_documents_var

        source = run_documents_var.get()
        if source is not None:  # a run on an agent: the orchestrator reads it
            given = await source.artifact(key)
            return ArtifactView(**given) if given is not None else None

        async def read(store: Any) -> ArtifactView | None:
            return await latest(store, key)

        found: ArtifactView | None = await using_store(None, read)
        return found

    @classmethod
    def get(cls, key: str) -> Any:
        """The latest artifact recorded under ``key`` (``.type``, ``.data``, ``.description``,
        ``.flow_run_id``), or None."""
        return dispatch(cls.aget(key))


__all__ = [
    "Artifact",
    "ArtifactView",
    "create_image_artifact",
    "create_link_artifact",
    "create_markdown_artifact",
    "create_progress_artifact",
    "create_table_artifact",
    "update_progress_artifact",
]
