"""Built-in blocks, as ``prefect.blocks.system`` offers them.

Secret(value="sk-...").save("api-key", overwrite=True)
Secret.load("api-key").get()
"""

from flowbus.engine.blocks import JSON, DateTime, Secret, String

__all__ = ["JSON", "DateTime", "Secret", "String"]
