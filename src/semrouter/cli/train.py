"""`semrouter train vocabulary|domain|reasoning|selector|jailbreak`: rebuild the shipped artifacts.

The vocabulary (spelling normalisation) comes first: the heads are trained on the text the
encoder reads after it. `semrouter.train` is imported only when the subcommand runs, so no
other command loads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from semrouter.train.domain import DomainReport
    from semrouter.train.reasoning import ReasoningReport


def add_train_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = commands.add_parser("train", help="train a learned head from the shared data")
    train.add_argument(
        "what", choices=["vocabulary", "domain", "reasoning", "selector", "jailbreak"]
    )
    train.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="MMLU-Pro data folder (default: ../shared/data/mmlu_pro from the repository)",
    )
    train.add_argument(
        "--out-dir", type=Path, default=None, help="where artifacts go (default: shipped)"
    )
    train.add_argument(
        "--pool", default="reference_pool", help="selector: pool name in models.json"
    )
    train.add_argument("--hidden", type=int, default=None, help="hidden units (0: linear head)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--quantize", action="store_true", help="train on the int8 encoder's features"
    )
    train.add_argument(
        "--limit", type=int, default=None, help="jailbreak: at most this many examples per split"
    )
    train.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from semrouter.signals.heads import SHIPPED
    from semrouter.train.data import DEFAULT_MMLU_DIR

    data_dir: Path = args.data_dir or DEFAULT_MMLU_DIR
    out_dir: Path = args.out_dir or Path(str(SHIPPED))
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.what == "vocabulary":
        _train_vocabulary(data_dir, out_dir)
    elif args.what == "selector":
        _train_selector(args, data_dir, out_dir)
    elif args.what == "jailbreak":
        _train_jailbreak(args, out_dir)
    else:
        _train_head(args, data_dir, out_dir)
    return 0


def _train_vocabulary(data_dir: Path, out_dir: Path) -> None:
    from semrouter.embed.spelling import VOCABULARY_FILE, count_words, write_vocabulary
    from semrouter.train.data import training_texts

    counts = count_words(training_texts(data_dir / "questions.jsonl"))
    write_vocabulary(counts, out_dir / VOCABULARY_FILE)
    print(f"wrote {out_dir / VOCABULARY_FILE}: {len(counts)} words")


def _train_selector(args: argparse.Namespace, data_dir: Path, out_dir: Path) -> None:
    from semrouter.train.selector import train_selector

    report = train_selector(
        args.pool,
        data_dir / "questions.jsonl",
        data_dir / "outcomes.csv.gz",
        data_dir / "models.json",
        out_dir,
        seed=args.seed,
    )
    print(report)


def _train_head(args: argparse.Namespace, data_dir: Path, out_dir: Path) -> None:
    """The domain or the reasoning head."""
    from semrouter.embed import create_embedder
    from semrouter.embed.settings import EmbeddingSettings
    from semrouter.train.heads import HeadSpec

    # Heads learn from the texts as written and are validated as the router reads requests.
    embedder = create_embedder(EmbeddingSettings(quantize=args.quantize))
    learner = create_embedder(EmbeddingSettings(quantize=args.quantize, spelling=False))
    defaults = {"domain": 512, "reasoning": 128}
    spec = HeadSpec(
        hidden=defaults[args.what] if args.hidden is None else args.hidden, seed=args.seed
    )
    report: DomainReport | ReasoningReport
    if args.what == "domain":
        from semrouter.train.domain import train_domain

        head, report = train_domain(embedder, learner, data_dir / "questions.jsonl", spec)
    else:
        from semrouter.train.reasoning import train_reasoning

        head, report = train_reasoning(embedder, learner, spec)
    path = out_dir / f"{args.what}_head.npz"
    head.save(path)
    for line in report.lines():
        print(line)
    print(f"calibration temperature: {head.temperature:.3f}")
    print(f"wrote {path}")


def _train_jailbreak(args: argparse.Namespace, out_dir: Path) -> None:
    """The jailbreak head, on the router's own features (spelling normalisation on)."""
    from semrouter.embed import create_embedder
    from semrouter.embed.settings import EmbeddingSettings
    from semrouter.signals.jailbreak import save_jailbreak
    from semrouter.train.heads import HeadSpec
    from semrouter.train.jailbreak import DEFAULT_HIDDEN, train_jailbreak

    embedder = create_embedder(EmbeddingSettings(quantize=args.quantize))
    hidden = DEFAULT_HIDDEN if args.hidden is None else args.hidden
    model, report = train_jailbreak(embedder, HeadSpec(hidden=hidden, seed=args.seed), args.limit)
    path = out_dir / "jailbreak_head.npz"
    save_jailbreak(model, path)
    for line in report.lines():
        print(line)
    print(f"calibration temperature: {model.head.temperature:.3f}")
    print(f"wrote {path}")
