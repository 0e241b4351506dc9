"""B3: a process that runs a one-task flow, start to finish (timed from outside).

Apart from the import line this file runs unchanged under Prefect (``from prefect import ...``).
"""

from flowbus import flow, task


@task
def hello(name: str) -> str:
    return f"hello {name}"


@flow
def one_task(name: str = "world") -> str:
    return hello(name)


if __name__ == "__main__":
    one_task()
