"""The SLO controller (`slo:`): per model, rolling TTFT / latency p95 and error rate of live
traffic, a degradation level with hysteresis, and the TTFT watchdog's failover target. The
pipeline applies it between routing and the rewrite; the transports feed it their timings."""

from semrouter.slo.control import SLO_HEADER, SloControl, Ticket

__all__ = ["SLO_HEADER", "SloControl", "Ticket"]
