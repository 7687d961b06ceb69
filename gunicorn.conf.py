"""gunicorn's settings for the Procfile's web process (``make serve``).

Workers: ``WEB_CONCURRENCY`` (gunicorn reads it itself; default 1). The one thing set here is
prometheus_client's multiprocess mode: each worker writes its counters to files under
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up, so a worker that ends must be marked
dead for its live gauges to be dropped (the client's documented gunicorn hook).
"""

from __future__ import annotations

import os
from typing import Any

# gunicorn 27's control socket lives at one path per user (~/.gunicorn/gunicorn.ctl), so a second
# gunicorn on the machine (a second instance, a benchmark) would take it over; optin needs none.
control_socket_disable = True


def child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
