"""The run context under the module name Prefect users import it from (``prefect.context``)."""

from flowbus.engine.context import (
    FlowRunContext,
    TaskRunContext,
    get_run_context,
    tags,
)

__all__ = ["FlowRunContext", "TaskRunContext", "get_run_context", "tags"]
