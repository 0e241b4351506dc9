"""What prefect-ray users import, under flowbus: ``from prefect_ray import RayTaskRunner``
becomes ``from flowbus.prefect_ray import RayTaskRunner`` (``remote_options`` too)."""

from flowbus.engine.ray_runner import RayTaskRunner, remote_options

__all__ = ["RayTaskRunner", "remote_options"]
