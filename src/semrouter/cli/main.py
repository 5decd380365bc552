"""The `semrouter` command line: serve, route, classify, config validate, train, setup.

Each subcommand is a thin function over the library; heavy imports happen inside the function
that needs them so `semrouter --help` and `config validate` stay instant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from semrouter.config import ConfigError, RouterConfig, default_config_path, load_config
from semrouter.config.reference import reference
from semrouter.embed.model_cache import SetupError

DEFAULT_CONFIG = str(default_config_path())


class CliError(Exception):
    """A user error: printed as one line to stderr, exit status 2."""


def load_router_config(path: str) -> RouterConfig:
    """The config at ``path``, its artifacts checked too; any problem is a CliError."""
    from semrouter.pipeline.artifacts import require_artifacts

    try:
        return require_artifacts(load_config(path), path)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def cmd_config_reference(_args: argparse.Namespace) -> int:
    print(reference(), end="")
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    config = load_router_config(args.file)
    print(
        f"{args.file}: OK ({len(config.models)} models, {len(config.decisions)} decisions, "
        f"{len(config.signals.names())} signals)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_router_config(args.config)
    import uvicorn

    from semrouter.proxy.app import create_app
    from semrouter.proxy.http11 import bounded_protocol

    uvicorn.run(
        create_app(config, args.config),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        loop="uvloop",
        http=bounded_protocol(config.router.limits),  # httptools, with header size and time bounds
        timeout_graceful_shutdown=math.ceil(config.router.limits.shutdown_grace_s),
    )
    return 0


def _read_jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CliError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
            if not isinstance(item, dict):
                raise CliError(f"{path}:{number}: each line must be a JSON object")
            yield number, item


def _route_request(path: str, number: int, item: dict[str, Any]) -> Any:
    from semrouter.pipeline.errors import RouterError
    from semrouter.pipeline.request import ChatRequest, chat_request_from_body

    text, messages = item.get("text"), item.get("messages")
    if isinstance(text, str):
        return ChatRequest(
            body={}, model="auto", messages=[{"role": "user", "content": text}], stream=False
        )
    if messages is None:
        raise CliError(f"{path}:{number}: needs 'text' (a string) or 'messages' (a list)")
    try:
        return chat_request_from_body({"model": "auto", "messages": messages})
    except RouterError as exc:
        raise CliError(f"{path}:{number}: {exc.message}") from None


def _route_line(item_id: object, summary: dict[str, Any]) -> dict[str, Any]:
    return {"id": item_id, **summary}


def cmd_route(args: argparse.Namespace) -> int:
    from semrouter.pipeline.router import Router

    config = load_router_config(args.config)
    items = list(_read_jsonl(args.input))
    requests = [_route_request(args.input, n, item) for n, item in items]
    router = Router.from_config(config)
    router.start_sync()
    out_path = Path(args.output)
    tmp_path = out_path.with_name(out_path.name + ".tmp")
    try:
        with open(tmp_path, "w", encoding="utf-8") as out:
            for start in range(0, len(requests), args.batch_size):
                batch = requests[start : start + args.batch_size]
                for (_, item), route in zip(
                    items[start : start + args.batch_size],
                    router.route_many_sync(batch),
                    strict=True,
                ):
                    out.write(json.dumps(_route_line(item.get("id"), route.summary())) + "\n")
        tmp_path.replace(out_path)
    except OSError as exc:
        raise CliError(f"{args.output}: cannot write: {exc.strerror}") from None
    print(f"routed {len(requests)} requests → {args.output}", file=sys.stderr)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from semrouter.pipeline.request import ChatRequest
    from semrouter.pipeline.router import Router

    config = load_router_config(args.config)
    router = Router.from_config(config)
    router.start_sync()
    request = ChatRequest(
        body={}, model="auto", messages=[{"role": "user", "content": args.text}], stream=False
    )
    summary = router.route_many_sync([request])[0].summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    signals = summary.get("signals", {})
    print(f"model:      {summary['model']}")
    print(f"decision:   {summary['decision']}")
    confidence = summary["confidence"]
    domain_line = (
        summary["domain"] if confidence is None else f"{summary['domain']} (p={confidence:.2f})"
    )
    print(f"domain:     {domain_line}")
    reasoning = "on" if summary["reasoning"] else "off"
    if summary["reasoning_effort"]:
        reasoning += f" (effort {summary['reasoning_effort']})"
    print(f"reasoning:  {reasoning}")
    if signals.get("reasoning_probability") is not None:
        print(f"p(reasoning-need): {signals['reasoning_probability']:.2f}")
    print(f"signals:    {', '.join(signals.get('fired', [])) or '-'}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from semrouter.embed.model_cache import ensure_model

    files = ensure_model(cache_dir=args.cache_dir, quantize=args.quantize)
    print(f"embedding model ready: {files.onnx}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semrouter", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the OpenAI-compatible routing proxy")
    serve.add_argument("--config", default=DEFAULT_CONFIG)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)

    config = commands.add_parser("config", help="config file tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser("validate", help="check a config and list every error")
    validate.add_argument("file")
    validate.set_defaults(func=cmd_config_validate)
    reference = config_commands.add_parser(
        "reference", help="print the config reference (Markdown), generated from the schema"
    )
    reference.set_defaults(func=cmd_config_reference)

    route = commands.add_parser("route", help="route a JSONL file offline (no backend needed)")
    route.add_argument("--config", default=DEFAULT_CONFIG)
    route.add_argument(
        "--input", required=True, help="JSONL: {id, text} or {id, messages}; - for stdin"
    )
    route.add_argument("--output", required=True)
    route.add_argument("--batch-size", type=int, default=64)
    route.set_defaults(func=cmd_route)

    classify = commands.add_parser("classify", help="show signals and the decision for one text")
    classify.add_argument("text")
    classify.add_argument("--config", default=DEFAULT_CONFIG)
    classify.add_argument("--json", action="store_true")
    classify.set_defaults(func=cmd_classify)

    setup = commands.add_parser("setup", help="prepare the embedding model cache (run once)")
    setup.add_argument("--cache-dir", default=None, help="default $SEMROUTER_CACHE_DIR")
    setup.add_argument(
        "--quantize", action="store_true", help="also the int8 model (embedding.quantize: true)"
    )
    setup.set_defaults(func=cmd_setup)

    from semrouter.cli.bench import add_bench_parsers
    from semrouter.cli.extproc import add_extproc_parsers
    from semrouter.cli.train import add_train_parser

    add_train_parser(commands)
    add_extproc_parsers(commands)
    add_bench_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, SetupError, ConfigError) as exc:
        # ConfigError here: found once the router was built (e.g. a head too narrow for the
        # embedder), after loading passed.
        print(f"semrouter: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
