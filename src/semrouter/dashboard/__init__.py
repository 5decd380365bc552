"""The admin dashboard `semrouter serve` answers at /dashboard (docs/dashboard.md).

app.py: the pages and their JSON APIs; gate.py: who may see them (the admin key, else loopback
only); stats.py: live traffic from the router's Prometheus registry; policy.py: the config's
policy as a graph, svg.py: drawn; trace.py: the playground's decision trace; config_view.py: the
loaded config and its validation. Recent decisions are recorded by the pipeline
(semrouter.pipeline.recent). Templates and browser code: templates/, static/; the charting
library comes from npm at set-up (frontend/package.json, scripts/setup.sh).
"""

from semrouter.dashboard.app import Dashboard

__all__ = ["Dashboard"]
