"""Shared pieces of the benchmarks: progress bar, run metadata, statistics, prompts, output.

Every bench writes one JSON file whose `meta` block says where and when it ran (machine,
date, commit), so a figure in docs/benchmarks.md can always be traced back to its run.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[3]


class BenchError(Exception):
    """A benchmark cannot run (missing tool, data or server): reported as one line."""


class Progress:
    """A one-line progress bar on stderr, redrawn at most every 0.2 s."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._drawn = 0.0
        self._draw(force=True)

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        self._draw(force=self.done >= self.total, note=note)

    def close(self) -> None:
        self._draw(force=True)
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, force: bool = False, note: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.2:
            return
        self._drawn = now
        width = 30
        filled = int(width * min(self.done, self.total) / self.total)
        elapsed = int(now - self.started)
        bar = "#" * filled + "." * (width - filled)
        clock = f"{elapsed // 60}:{elapsed % 60:02d}"
        line = f"\r{self.label} [{bar}] {self.done}/{self.total} {clock} {note}"
        self.stream.write(line[:120].ljust(120))
        self.stream.flush()


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Where and when a bench ran: date (UTC), commit, machine, Python; plus `extra`."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "argv": sys.argv[1:],
        **extra,
    }


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p99 and mean of latencies in milliseconds (None when there are none)."""
    if not values_ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None}
    array = np.asarray(values_ms, dtype=np.float64)
    return {
        "n": int(array.size),
        "p50_ms": round(float(np.percentile(array, 50)), 3),
        "p99_ms": round(float(np.percentile(array, 99)), 3),
        "mean_ms": round(float(array.mean()), 3),
    }


def time_ms(func: Callable[[], object], runs: int, warmup: int = 5) -> list[float]:
    """Wall time of `runs` calls of func, in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        func()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        times.append((time.perf_counter() - started) * 1000)
    return times


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux: ru_maxrss is in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def process_memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of another process, in MiB, from /proc; (0, 0) once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0, 0.0
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return (
        round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        round(int(fields["VmHWM"].split()[0]) / 1024, 1),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write data as indented JSON, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None when the `bench` extra is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path, title: str) -> bool:
    """Title a finished figure with the run, write it as PNG and release it."""
    figure.suptitle(title, fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return True


def run_title(bench: str, meta: dict[str, Any]) -> str:
    return f"semrouter bench {bench} — {meta['date']} {str(meta['commit'])[:10]} {meta['cpu']}"


# Sentences from several domains, cycled to build prompts of an exact token length.
_CORPUS = (
    "The mitochondria produce most of the cell's supply of adenosine triphosphate through "
    "oxidative phosphorylation.",
    "A company's quarterly report showed revenue growth of twelve percent while operating "
    "margins narrowed because of higher logistics costs.",
    "Write a Python function that parses a log file, groups the errors by module and returns "
    "the five most frequent ones.",
    "In 1648 the Peace of Westphalia ended the Thirty Years' War and reshaped the balance of "
    "power in Europe.",
    "If a train travels 180 kilometres in two and a half hours, what is its average speed in "
    "metres per second?",
    "The court held that the contract was void because one party lacked the capacity to "
    "consent at the time of signing.",
    "Kant argued that moral duties follow from reason alone and hold regardless of the "
    "consequences they produce.",
    "When the central bank raises interest rates, borrowing becomes more expensive and "
    "aggregate demand tends to fall.",
    "A ball is thrown upward at twenty metres per second; ignoring air resistance, how high "
    "does it rise before falling back?",
    "Cognitive behavioural therapy helps patients notice automatic thoughts and test them "
    "against the evidence.",
    "The reaction between sodium and chlorine releases a large amount of energy and forms an "
    "ionic crystal lattice.",
    "Regular physical activity lowers blood pressure and improves insulin sensitivity in "
    "adults of every age.",
)


def make_prompt(tokens: int, count_tokens: Callable[[str], int], start: int = 0) -> str:
    """A prose prompt of `tokens` tokens under count_tokens (within a word), deterministic.

    start picks the corpus sentence to begin with, so callers can make distinct prompts of
    the same length.
    """
    words: list[str] = []
    i = start
    while count_tokens(" ".join(words)) < tokens:
        words.extend(_CORPUS[i % len(_CORPUS)].split())
        i += 1
    low, high = 1, len(words)
    while low < high:  # fewest words reaching the target
        mid = (low + high) // 2
        if count_tokens(" ".join(words[:mid])) >= tokens:
            high = mid
        else:
            low = mid + 1
    return " ".join(words[:low])


def minilm_token_counter() -> Callable[[str], int]:
    """Token counter of the router's encoder tokenizer (all-MiniLM-L6-v2 wordpieces)."""
    from tokenizers import Tokenizer

    from semrouter.embed.model_cache import ensure_model

    tokenizer = Tokenizer.from_file(str(ensure_model().tokenizer))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
