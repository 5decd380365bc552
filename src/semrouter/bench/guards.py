"""`semrouter bench guards`: how well and how fast the safety guards work, beside baselines.

One function per section (`SECTIONS`: name → function(args, embedder) → `Section`), chosen with
`--sections`; each returns its JSON block and its Markdown table lines. Results go to
out/bench/guards.json and guards.md.

The jailbreak section scores the validation split of `semrouter.train.guard_data` (never tuned
on) and the realistic chat validation set with the shipped head (`semrouter.signals.jailbreak`)
and with `prompt-guardrail` (PyPI: TF-IDF + logistic regression) on the same texts: ROC AUC,
TPR at 1/2/5% FPR, the confusion at each guard's own threshold, recall per attack kind, the
flagged rate per benign kind and on the chat set, and the latency of the head beyond the
encoder pass (one text per call, the router's per-request shape).

The PII section scores `semrouter.signals.pii` on data/pii (tune, and validation never tuned
on) with NER off (the pattern path) and on, and Presidio's AnalyzerEngine at its defaults
(spaCy en_core_web_sm) on the same texts: precision and recall per type and overall (exact type
and span), the share of negatives with no entity, and the latency of one 200-token text.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from semrouter.bench.common import (
    REPO_ROOT,
    BenchError,
    latency_summary,
    minilm_token_counter,
    run_metadata,
    time_ms,
    write_json,
)
from semrouter.config import ConfigError, load_config
from semrouter.config.schema import PII_TYPES, PiiConfig
from semrouter.embed.base import Embedder, Encoded
from semrouter.signals.jailbreak import load_jailbreak
from semrouter.signals.pii import SPACY_MODEL, PiiDetector
from semrouter.train.features import encode_texts
from semrouter.train.guard_data import GuardExample, guard_examples, realistic_chat_validation
from semrouter.train.jailbreak import by_split, is_hard_benign, roc_auc, tpr_at_fpr

FPR_POINTS = (0.01, 0.02, 0.05)
BASELINE_THRESHOLD = 0.5  # prompt-guardrail's own decision (its predict())


@dataclass
class Section:
    data: dict[str, Any]
    lines: list[str] = field(default_factory=list)


def _confusion(labels: np.ndarray, flagged: np.ndarray) -> dict[str, float | int]:
    tp = int(np.sum(flagged & (labels == 1)))
    fp = int(np.sum(flagged & (labels == 0)))
    positives, negatives = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    return {
        "tp": tp,
        "fp": fp,
        "tn": negatives - fp,
        "fn": positives - tp,
        "tpr": round(tp / max(positives, 1), 4),
        "fpr": round(fp / max(negatives, 1), 4),
    }


def score_guard(
    examples: Sequence[GuardExample],
    scores: np.ndarray,
    chat_scores: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """Every figure of one guard on the validation split and the chat set."""
    labels = np.array([e.label for e in examples])
    flagged = scores >= threshold
    by_kind: dict[tuple[int, str], list[bool]] = defaultdict(list)
    for example, hit in zip(examples, flagged, strict=True):
        by_kind[(example.label, example.kind)].append(bool(hit))
    hard = [bool(hit) for e, hit in zip(examples, flagged, strict=True) if is_hard_benign(e)]
    return {
        "threshold": round(float(threshold), 4),
        "roc_auc": round(roc_auc(labels, scores), 4),
        "tpr_at_fpr": {f"{p:.0%}": round(tpr_at_fpr(labels, scores, p), 4) for p in FPR_POINTS},
        "confusion": _confusion(labels, flagged),
        "recall_by_kind": {
            kind: {"n": len(hits), "recall": round(float(np.mean(hits)), 4)}
            for (label, kind), hits in sorted(by_kind.items())
            if label == 1
        },
        "flagged_by_benign_kind": {
            kind: {"n": len(hits), "flagged": round(float(np.mean(hits)), 4)}
            for (label, kind), hits in sorted(by_kind.items())
            if label == 0
        },
        "hard_benign_flagged": {"n": len(hard), "flagged": round(float(np.mean(hard)), 4)},
        "chat_flagged": {
            "n": len(chat_scores),
            "flagged": round(float(np.mean(chat_scores >= threshold)), 4),
        },
    }


def _prompt_guardrail() -> Callable[[Sequence[str]], np.ndarray] | None:
    """prompt-guardrail's P(injection) for texts, or None when it is not installed."""
    try:
        from guardify import LogisticRegressionGuardrail
    except ImportError:
        return None
    guard = LogisticRegressionGuardrail()
    classifier, vectorizer = guard._clf, guard._vectorizer
    column = list(classifier.classes_).index(1)

    def scores(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(classifier.predict_proba(vectorizer.transform(list(texts)))[:, column])

    return scores


def _row(encoded: Encoded, i: int) -> Encoded:
    ids = (encoded.token_ids[i],) if encoded.token_ids else ()
    return Encoded(
        encoded.embeddings[i : i + 1],
        encoded.features[i : i + 1],
        encoded.token_counts[i : i + 1],
        ids,
    )


def _table(name: str, figures: dict[str, Any]) -> str:
    c = figures["confusion"]
    tprs = " | ".join(f"{figures['tpr_at_fpr'][f'{p:.0%}']:.3f}" for p in FPR_POINTS)
    return (
        f"| {name} | {figures['roc_auc']:.4f} | {tprs} | {figures['threshold']:.3f} | "
        f"{c['tpr']:.3f} | {c['fpr']:.3f} | {figures['hard_benign_flagged']['flagged']:.3f} | "
        f"{figures['chat_flagged']['flagged']:.3f} |"
    )


def jailbreak_section(args: argparse.Namespace, embedder: Embedder) -> Section:
    try:
        model = load_jailbreak(args.head)
        examples = by_split(guard_examples(), args.limit, seed=0)["validation"]
    except (FileNotFoundError, ImportError) as exc:
        raise BenchError(str(exc)) from None
    chat = realistic_chat_validation()[: args.limit]
    texts = [e.text for e in examples]
    encoded = encode_texts(embedder, texts)
    scored = {
        "semrouter": (
            model.probabilities(encoded),
            model.probabilities(encode_texts(embedder, chat)),
            model.threshold,
        )
    }
    rows = [_row(encoded, i) for i in range(min(args.latency_texts, len(examples)))]
    timings = [t for row in rows for t in time_ms(partial(model.probabilities, row), 5, 1)]
    latency = {"semrouter head (beyond the encoder)": latency_summary(timings)}
    baseline = _prompt_guardrail()
    if baseline is not None:
        scored["prompt-guardrail"] = (baseline(texts), baseline(chat), BASELINE_THRESHOLD)
        latency["prompt-guardrail"] = latency_summary(
            [
                t
                for text in texts[: args.latency_texts]
                for t in time_ms(partial(baseline, [text]), 5, 1)
            ]
        )
    # The authored examples' validation templates were never seen in any form in training.
    own = [i for i, e in enumerate(examples) if e.source == "authored"]
    if len({examples[i].label for i in own}) < 2:
        own = []
    guards: dict[str, dict[str, Any]] = {}
    for name, (scores, chat_scores, threshold) in scored.items():
        guards[name] = score_guard(examples, scores, chat_scores, threshold)
        if own:
            guards[name]["authored_only"] = score_guard(
                [examples[i] for i in own], scores[own], chat_scores, threshold
            )
    lines = [
        f"Jailbreak validation split: {len(examples)} prompts "
        f"({int(sum(e.label for e in examples))} attacks); realistic chat: {len(chat)}.",
        "",
        "| Guard | ROC AUC | TPR @1% FPR | @2% | @5% | threshold | TPR | FPR | hard benign "
        "flagged | chat flagged |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(_table(name, figures) for name, figures in guards.items()),
        *(
            _table(f"{name}, authored only", f["authored_only"])
            for name, f in guards.items()
            if "authored_only" in f
        ),
        "",
        "| Attack kind | n | " + " | ".join(f"{name} recall" for name in guards) + " |",
        "|---|---|" + "---|" * len(guards),
    ]
    ours = guards["semrouter"]
    for kind, entry in ours["recall_by_kind"].items():
        recalls = " | ".join(f"{g['recall_by_kind'][kind]['recall']:.3f}" for g in guards.values())
        lines.append(f"| {kind} | {entry['n']} | {recalls} |")
    lines += ["", "| Benign kind | n | " + " | ".join(f"{n} flagged" for n in guards) + " |"]
    lines.append("|---|---|" + "---|" * len(guards))
    for kind, entry in ours["flagged_by_benign_kind"].items():
        rates = " | ".join(
            f"{g['flagged_by_benign_kind'][kind]['flagged']:.3f}" for g in guards.values()
        )
        lines.append(f"| {kind} | {entry['n']} | {rates} |")
    lines += ["", "| Latency per text (beyond the encoder for semrouter) | p50 ms | p99 ms |"]
    lines.append("|---|---|---|")
    lines += [f"| {name} | {s['p50_ms']} | {s['p99_ms']} |" for name, s in latency.items()]
    data = {"validation_size": len(examples), "guards": guards, "latency": latency}
    return Section(data, lines)


# Presidio's entity names for ours (DATE_TIME is its nearest type to a date of birth).
PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "US_SSN": "US_SSN",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "PERSON": "PERSON",
    "LOCATION": "LOCATION",
    "DATE_TIME": "DATE_OF_BIRTH",
}
PII_LATENCY_TOKENS = 200
Span = tuple[str, int, int]  # (type, start, end)


@dataclass(frozen=True)
class PiiExample:
    id: str
    kind: str
    text: str
    entities: frozenset[Span]


def pii_examples(directory: Path, split: str) -> list[PiiExample]:
    """One split of the PII evaluation set (data/pii/<split>.jsonl)."""
    path = directory / f"{split}.jsonl"
    if not path.is_file():
        raise BenchError(f"{path} not found (python data/pii/build.py writes it)")
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        spans = frozenset((e["type"], e["start"], e["end"]) for e in row["entities"])
        examples.append(PiiExample(row["id"], row["kind"], row["text"], spans))
    return examples


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def score_pii(examples: Sequence[PiiExample], found: Sequence[set[Span]]) -> dict[str, Any]:
    """Precision / recall per type and overall (exact type and span), and the clean rate."""
    counts = {t: {"tp": 0, "fp": 0, "fn": 0} for t in PII_TYPES}
    negatives = clean = 0
    for example, spans in zip(examples, found, strict=True):
        for kind, *_ in spans & example.entities:
            counts[kind]["tp"] += 1
        for kind, *_ in spans - example.entities:
            counts[kind]["fp"] += 1
        for kind, *_ in example.entities - spans:
            counts[kind]["fn"] += 1
        if not example.entities:
            negatives += 1
            clean += not spans
    total = {k: sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn")}

    def figures(c: dict[str, int]) -> dict[str, Any]:
        return {
            **c,
            "precision": _ratio(c["tp"], c["tp"] + c["fp"]),
            "recall": _ratio(c["tp"], c["tp"] + c["fn"]),
        }

    return {
        "texts": len(examples),
        "negatives": negatives,
        "clean_rate": _ratio(clean, negatives),
        "overall": figures(total),
        "by_type": {kind: figures(c) for kind, c in counts.items()},
    }


def _presidio() -> Callable[[str], set[Span]] | None:
    """Presidio's AnalyzerEngine at its defaults on spaCy en_core_web_sm, or None without it."""
    try:
        import tldextract.tldextract
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError:
        return None
    # Its email recogniser's tldextract would fetch the public suffix list: use the bundled one.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }
    )
    engine = AnalyzerEngine(nlp_engine=provider.create_engine())
    entities = list(PRESIDIO_TYPES)

    def analyze(text: str) -> set[Span]:
        results = engine.analyze(text, language="en", entities=entities)
        return {(PRESIDIO_TYPES[r.entity_type], r.start, r.end) for r in results}

    return analyze


_WORST_NAMES = ("Ada Brook", "Ben Castell", "Cora Dunmore", "Dev Eastwick", "Eli Farrow")


def _ner_worst_text(tokens: Callable[[str], int]) -> str:
    """~200 tokens with a capitalised pair in every sentence and no introducing phrase: NER
    then reads the whole text (the detector's worst case, short of its ner_chars budget)."""
    sentences: list[str] = []
    while tokens(" ".join(sentences)) < PII_LATENCY_TOKENS:
        a = _WORST_NAMES[len(sentences) % len(_WORST_NAMES)]
        b = _WORST_NAMES[(len(sentences) + 2) % len(_WORST_NAMES)]
        sentences.append(f"Yesterday {a} met {b} near the station and they talked for hours.")
    return " ".join(sentences)


def _latency_texts(
    examples: Sequence[PiiExample], count: int, tokens: Callable[[str], int]
) -> list[str]:
    """`count` texts of ~200 encoder tokens, each joined from consecutive examples."""
    texts: list[str] = []
    i = 0
    while len(texts) < count and i < len(examples):
        parts: list[str] = []
        while i < len(examples) and tokens(" ".join(parts)) < PII_LATENCY_TOKENS:
            parts.append(examples[i].text)
            i += 1
        texts.append(" ".join(parts))
    return texts


def _pii_row(name: str, split: str, f: dict[str, Any]) -> str:
    o = f["overall"]
    return (
        f"| {name} | {split} | {f['texts']} | {o['tp'] + o['fn']} | {o['precision']} | "
        f"{o['recall']} | {f['clean_rate']} ({f['negatives']}) |"
    )


def _detected(detector: PiiDetector, text: str) -> set[Span]:
    return {(e.type, e.start, e.end) for e in detector.detect(text)}


def pii_section(args: argparse.Namespace, embedder: Embedder) -> Section:
    directory = Path(args.pii_data) if args.pii_data else REPO_ROOT / "data" / "pii"
    splits = {s: pii_examples(directory, s) for s in args.pii_splits.split(",") if s}
    guards: dict[str, Callable[[str], set[Span]]] = {}
    for name, ner in (("semrouter patterns", False), ("semrouter + NER", True)):
        detector = PiiDetector(PiiConfig(ner=ner))
        detector.load()
        guards[name] = partial(_detected, detector)
    presidio = _presidio() if args.pii_baseline else None
    if presidio is not None:
        guards["Presidio (defaults, en_core_web_sm)"] = presidio
    scores = {
        name: {split: score_pii(ex, [guard(e.text) for e in ex]) for split, ex in splits.items()}
        for name, guard in guards.items()
    }
    chat = realistic_chat_validation()[: args.limit]
    chat_flagged = {
        name: _ratio(sum(1 for text in chat if guard(text)), len(chat))
        for name, guard in guards.items()
    }
    tokens = minilm_token_counter()
    timed = _latency_texts(
        [e for ex in splits.values() for e in ex], args.pii_latency_texts, tokens
    )
    latency = {
        name: latency_summary([t for text in timed for t in time_ms(partial(guard, text), 5, 2)])
        for name, guard in guards.items()
    }
    worst = _ner_worst_text(tokens)
    latency["semrouter + NER, worst case (NER reads all of it)"] = latency_summary(
        time_ms(partial(guards["semrouter + NER"], worst), 50, 5)
    )
    lines = [
        "| Detector | split | texts | entities | precision | recall | negatives clean (n) |",
        "|---|---|---|---|---|---|---|",
        *(_pii_row(n, s, f) for n, per in scores.items() for s, f in per.items()),
        "",
        "| Type | " + " | ".join(f"{n} P / R" for n in guards) + " |",
        "|---|" + "---|" * len(guards),
    ]
    last = list(splits)[-1]
    for kind in PII_TYPES:
        cells = []
        for per in scores.values():
            t = per[last]["by_type"][kind]
            cells.append(f"{t['precision']} / {t['recall']} ({t['tp'] + t['fn']})")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += [
        f"(per type: the {last} split; n = labelled entities)",
        "",
        f"Realistic chat queries without PII (data/validation, n = {len(chat)}) with any entity: "
        + ", ".join(f"{name} {rate}" for name, rate in chat_flagged.items()),
        "",
        f"| Latency, one ~{PII_LATENCY_TOKENS}-token text ({len(timed)} texts from the set) | "
        "p50 ms | p99 ms |",
        "|---|---|---|",
        *(f"| {name} | {s['p50_ms']} | {s['p99_ms']} |" for name, s in latency.items()),
    ]
    data = {
        "splits": {s: len(ex) for s, ex in splits.items()},
        "scores": scores,
        "latency": latency,
        "chat_flagged": chat_flagged,
    }
    return Section(data, lines)


SECTIONS: dict[str, Callable[[argparse.Namespace, Embedder], Section]] = {
    "jailbreak": jailbreak_section,
    "pii": pii_section,
}


def run(args: argparse.Namespace) -> int:
    from semrouter.embed import create_embedder

    names = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or not names:
        raise BenchError(f"unknown sections {unknown}; choose from {sorted(SECTIONS)}")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    embedder = create_embedder(config.embedding)
    load = os.getloadavg()
    results: dict[str, Any] = {
        "meta": run_metadata(bench="guards", load_average=[round(x, 2) for x in load])
    }
    lines = [f"semrouter bench guards — load average {load[0]:.2f}", ""]
    for name in names:
        section = SECTIONS[name](args, embedder)
        results[name] = section.data
        lines += [f"## {name}", "", *section.lines, ""]
    output = Path(args.output)
    write_json(output, results)
    markdown = "\n".join(lines)
    output.with_suffix(".md").write_text(markdown + "\n", encoding="utf-8")
    print(markdown)
    return 0
