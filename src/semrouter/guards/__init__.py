"""Safety guards on the request path: jailbreak / prompt-injection and PII policies per decision
(block, redact, route, flag), on the guard signals of semrouter.signals.guards.

`GuardStage` (stage.py) is the pipeline stage, first of the stages; policy.py resolves each
decision's policies; redact.py and restore.py replace PII by placeholders in the request and
give the values back in the response; metrics.py counts actions by guard.
"""

from semrouter.guards.stage import GUARD_HEADER, GuardRefusal, GuardStage

__all__ = ["GUARD_HEADER", "GuardRefusal", "GuardStage"]
