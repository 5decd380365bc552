"""An Envoy v3 bootstrap for semrouter's ext_proc server, generated from the router config.

    client → listener (HTTP connection manager)
               ext_proc filter  → cluster `extproc` (HTTP/2, semrouter extproc)
               router filter    → cluster `model_<name>` chosen by the x-semrouter-model header

Routes, in order: /health and /v1/models answered by Envoy itself; per model, routes matching
its chat-completions and completions paths (and embeddings, for `router.embeddings_model`) and
`x-semrouter-model: <name>` (the ext_proc server sets both and clears the route cache); the
paths of the other client APIs (semrouter.apis: /v1/messages, /v1/responses, /v1/completions,
/v1/embeddings), which the processor sends on to a model route, else 503; a fallback for
/v1/chat/completions without the header (the default model: what a request reaches when the
processor is down and failure_mode_allow lets it through); 404 for the rest. Errors Envoy
produces itself (backend unreachable or too slow, processor unavailable, a body beyond its
buffer) are rewritten into OpenAI's error shape by `local_reply_config`; the processor's own
refusals already carry that shape (or the route's API's) and pass unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from semrouter.apis import APIS
from semrouter.config.schema import LimitsConfig, ModelConfig, RouterConfig
from semrouter.extproc.backends import BackendLayout, EndpointAddress
from semrouter.pipeline.api import ClientApi

EXTPROC_CLUSTER = "extproc"
MODEL_HEADER = "x-semrouter-model"
CHAT_PATH = "/v1/chat/completions"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
EXTPROC_FILTER = "envoy.filters.http.ext_proc"
EXTPROC_ERROR_STATUS = 503  # Envoy's answer when the processor fails (a timeout is 504)
MIN_STREAM_IDLE_S = 300.0
MAX_CONNECTIONS = 50_000
REWRITE_ALLOWANCE = 64 * 1024

_TYPE = "type.googleapis.com/envoy."
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_JSON = [
    {
        "header": {"key": "content-type", "value": "application/json"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
]
_UPSTREAM_FAILURE_FLAGS = ["UF", "URX", "UO", "UH", "UR", "UC"]
_UPSTREAM_TIMEOUT_FLAGS = ["UT"]
# Envoy's own 413 (a body without Content-Length that outgrew its buffer). The processor's 413s
# (too many messages, parts, tools) carry their own body and must not match: Envoy removes
# content-length from a request whose body the processor streams, so only the details tell.
_ENVOY_BODY_TOO_LARGE = "response.code_details == 'request_payload_too_large'"
_NOT_OURS = "!response.code_details.startsWith('semrouter_')"


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    listen_port: int
    extproc_port: int
    admin_port: int
    listen_address: str = "0.0.0.0"
    admin_address: str = "127.0.0.1"
    extproc_host: str = "127.0.0.1"
    failure_mode_allow: bool = False
    extproc_timeout_ms: int = 2000


def cluster_name(model: ModelConfig) -> str:
    return f"model_{model.name}"


def _seconds(value: float) -> str:
    return f"{value:.3f}s"


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _error(message: str, type_: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code}}


def _no_extproc() -> dict[str, Any]:
    return {
        EXTPROC_FILTER: {
            "@type": _TYPE + "extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
            "disabled": True,
        }
    }


def models_listing(config: RouterConfig, created: int) -> dict[str, Any]:
    """What GET /v1/models answers: the auto names, then the configured models."""
    names = [*config.router.auto_model_names, *(m.name for m in config.models)]
    return {
        "object": "list",
        "data": [
            {"id": n, "object": "model", "created": created, "owned_by": "semrouter"} for n in names
        ],
    }


def _direct(name: str, path: str | None, status: int, body: object) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"path": path} if path else {"prefix": "/"},
        "direct_response": {
            "status": status,
            "body": {"inline_string": orjson.dumps(body).decode()},
        },
        "response_headers_to_add": _JSON,
        "typed_per_filter_config": _no_extproc(),
    }


def _forward(model: ModelConfig) -> dict[str, Any]:
    """To the model's cluster: no overall deadline (streams run long), but `timeout_s` of silence
    per attempt ends it, and a refused connection is retried on another endpoint."""
    return {
        "cluster": cluster_name(model),
        "timeout": "0s",
        "auto_host_rewrite": True,
        "retry_policy": {
            "retry_on": "connect-failure,refused-stream,reset-before-request",
            "num_retries": model.retries,
            "per_try_idle_timeout": _seconds(model.timeout_s),
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": _TYPE
                        + "extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    },
                }
            ],
            "host_selection_retry_max_attempts": 3,
        },
    }


# The client sees the decision headers that ext_proc set on the request, copied by Envoy onto
# the response: no third gRPC round trip per request (response_header_mode SKIP). Like
# `semrouter serve`, the backend's cache-control is kept, else no-cache is sent.
_DECISION_HEADERS = [
    {
        "header": {"key": name, "value": f"%REQ({name})%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        "keep_empty_value": False,
    }
    for name in (
        "x-semrouter-model",
        "x-semrouter-decision",
        "x-semrouter-domain",
        "x-semrouter-reasoning",
        "x-semrouter-reasoning-effort",
        "x-semrouter-route-ms",
        "x-semrouter-tools",  # tool pre-selection: kept/total
        "x-semrouter-tenant",  # router.auth on: the processor sets it, or removes the client's
        "x-semrouter-cache",  # hit, miss or bypass (a hit is answered by the processor itself)
        "x-semrouter-affinity",  # new, sticky, lock, escalated or unavailable (affinity on)
        "x-semrouter-slo",  # ok or degraded=<steps>;level=<n> (the SLO controller on)
        "x-semrouter-budget",  # thinking=<B>,max_tokens|native|effort or none (no cut here)
    )
] + [
    {
        "header": {"key": "cache-control", "value": "no-cache"},
        "append_action": "ADD_IF_ABSENT",
    }
]


def _model_route(name: str, model: ModelConfig, path: str) -> dict[str, Any]:
    """A backend path of the model, for requests the processor sent there."""
    return {
        "name": name,
        "match": {
            "path": path,
            "headers": [{"name": MODEL_HEADER, "string_match": {"exact": model.name}}],
        },
        "route": _forward(model),
        "response_headers_to_add": _DECISION_HEADERS,
    }


def _api_route(api: ClientApi, request_body: str) -> dict[str, Any]:
    """A client API's path (semrouter.apis) as the client sends it: the processor translates
    the request and sends it on to a model's route; what reaches this route unprocessed (the
    processor down, failure_mode_allow) gets a 503, never an untranslated backend call. Its
    processing mode (fixed when the request starts, on this first route) sends the processor
    the response too, streamed, for its translation back."""
    body = _error("The routing service is unavailable", "api_error", "router_unavailable")
    mode = {
        "request_header_mode": "SEND",
        "request_body_mode": request_body,
        "request_trailer_mode": "SKIP",
        "response_header_mode": "SEND",
        "response_body_mode": "STREAMED",
        "response_trailer_mode": "SKIP",
    }
    return {
        "name": f"api_{api.name}",
        "match": {"path": api.path},
        "direct_response": {
            "status": EXTPROC_ERROR_STATUS,
            "body": {"inline_string": orjson.dumps(body).decode()},
        },
        "response_headers_to_add": _JSON,
        "typed_per_filter_config": {
            EXTPROC_FILTER: {
                "@type": _TYPE + "extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
                "overrides": {"processing_mode": mode},
            }
        },
    }


def _routes(config: RouterConfig, layouts: dict[str, BackendLayout]) -> list[dict[str, Any]]:
    routes = [
        _direct("health", "/health", 200, {"status": "ok"}),
        _direct("models", "/v1/models", 200, models_listing(config, int(time.time()))),
    ]
    for model in config.models:
        base = layouts[model.name].base_path
        routes.append(_model_route(f"model_{model.name}", model, layouts[model.name].chat_path))
        routes.append(_model_route(f"model_{model.name}_completions", model, base + "/completions"))
        if model.name == config.router.embeddings_model:
            routes.append(
                _model_route(f"model_{model.name}_embeddings", model, base + "/embeddings")
            )
    request_body = _request_body_mode(observes_responses(config))
    routes.extend(_api_route(api, request_body) for api in APIS)
    default = next(m for m in config.models if m.name == config.default.model)
    fallback = _forward(default)
    if layouts[default.name].chat_path != CHAT_PATH:
        fallback["prefix_rewrite"] = layouts[default.name].chat_path
    routes.append({"name": "fallback", "match": {"path": CHAT_PATH}, "route": fallback})
    routes.append(
        _direct("not_found", None, 404, _error("Not Found", "invalid_request_error", "not_found"))
    )
    return routes


def _local_replies(
    options: EnvoyOptions, max_body_bytes: int, limits: LimitsConfig
) -> dict[str, Any]:
    """OpenAI-shaped bodies for the replies Envoy makes up itself (first matching mapper wins)."""
    backend = "Backend for model '%REQ(X-SEMROUTER-MODEL)%'"

    def mapper(filter_: dict[str, Any], status: int, error: dict[str, Any]) -> dict[str, Any]:
        return {
            "filter": filter_,
            "status_code": status,
            "body_format_override": {"json_format": error, "content_type": "application/json"},
        }

    def status_is(code: int) -> dict[str, Any]:
        return {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {
                        "default_value": code,
                        "runtime_key": f"semrouter.local_reply.{code}",
                    },
                }
            }
        }

    def cel(expression: str) -> dict[str, Any]:
        return {
            "extension_filter": {
                "name": "envoy.access_loggers.extension_filters.cel",
                "typed_config": {
                    "@type": _TYPE + "extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                    "expression": expression,
                },
            }
        }

    return {
        "mappers": [
            mapper(
                {"response_flag_filter": {"flags": _UPSTREAM_TIMEOUT_FLAGS}},
                504,
                _error(f"{backend} did not answer in time", "api_error", "backend_timeout"),
            ),
            mapper(
                {"response_flag_filter": {"flags": _UPSTREAM_FAILURE_FLAGS}},
                502,
                _error(
                    f"{backend} is unavailable: %LOCAL_REPLY_BODY%",
                    "api_error",
                    "backend_unavailable",
                ),
            ),
            # Envoy's own 503 (the processor failed), not the processor's 503 answers (its
            # immediate responses carry details 'semrouter_<code>': overloaded, a guard down).
            mapper(
                {"and_filter": {"filters": [status_is(EXTPROC_ERROR_STATUS), cel(_NOT_OURS)]}},
                EXTPROC_ERROR_STATUS,
                _error("The routing service is unavailable", "api_error", "router_unavailable"),
            ),
            mapper(
                status_is(504),
                504,
                _error(
                    f"The routing service did not answer within {options.extproc_timeout_ms} ms",
                    "api_error",
                    "router_timeout",
                ),
            ),
            # The client too slow with its headers or body (request_headers_timeout,
            # request_timeout), as `semrouter serve` answers it.
            mapper(
                status_is(408),
                408,
                _error(
                    "Request not received within "
                    f"{limits.header_read_timeout_s + limits.body_read_timeout_s:g}s",
                    "invalid_request_error",
                    "request_timeout",
                ),
            ),
            mapper(
                status_is(431),
                431,
                _error(
                    f"Request headers exceed the limit of {limits.max_header_bytes} bytes",
                    "invalid_request_error",
                    "headers_too_large",
                ),
            ),
            # A body sent without Content-Length that outgrew the buffer; a declared length over
            # the limit is refused by the processor itself, with its own message.
            mapper(
                {
                    "and_filter": {"filters": [status_is(413), cel(_ENVOY_BODY_TOO_LARGE)]}
                },
                413,
                _error(
                    f"Request body exceeds the limit of {max_body_bytes} bytes",
                    "invalid_request_error",
                    "request_too_large",
                ),
            ),
        ]
    }


def observes_responses(config: RouterConfig) -> bool:
    """Whether some stage may see or change responses (the processor then gets response
    headers, and asks for the bodies it needs): the response cache, or observability that
    times responses (observe.extproc_responses: TTFT, tokens, durations), or a guard that
    redacts (its placeholders are restored in the response), or the SLO controller (it times
    responses: the headers, and a stream's first event and end)."""
    observe = config.observe
    return (
        config.cache.backend != "off"
        or (observe.enabled and observe.extproc_responses)
        or config.guards.redacts
        or config.slo.enabled
    )


def _request_body_mode(sees_responses: bool) -> str:
    return "BUFFERED" if sees_responses else "STREAMED"


def _extproc_filter(options: EnvoyOptions, sees_responses: bool) -> dict[str, Any]:
    """With `sees_responses` (`observes_responses`), the processor sees response headers
    and, by a mode override in its answer, the bodies it stores. Envoy ignores mode overrides
    when the body is sent without waiting for the headers answer, so then the request body is
    BUFFERED: two round trips for a request and one for its response headers, instead of one."""
    request_body = _request_body_mode(sees_responses)
    return {
        "name": EXTPROC_FILTER,
        "typed_config": {
            "@type": _TYPE + "extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": EXTPROC_CLUSTER}},
            "failure_mode_allow": options.failure_mode_allow,
            "message_timeout": _seconds(options.extproc_timeout_ms / 1000),
            "status_on_error": {"code": EXTPROC_ERROR_STATUS},
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": request_body,
                "request_trailer_mode": "SKIP",
                "response_header_mode": "SEND" if sees_responses else "SKIP",
                "response_body_mode": "NONE",
                "response_trailer_mode": "SKIP",
            },
            "allow_mode_override": True,
            # One round trip: the processor answers the headers once it has the whole body.
            "send_body_without_waiting_for_header_response": not sees_responses,
        },
    }


def _cluster(
    name: str,
    endpoints: Sequence[EndpointAddress],
    tls: bool,
    connect_timeout_s: float,
    http2: bool,
) -> dict[str, Any]:
    heaviest = max(e.weight for e in endpoints)
    http_options: dict[str, Any] = {
        "@type": _TYPE + "extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {
            "http2_protocol_options" if http2 else "http_protocol_options": {}
        },
    }
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": _seconds(connect_timeout_s),
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {"address": _address(e.host, e.port), "hostname": e.host},
                            "load_balancing_weight": max(1, round(e.weight / heaviest * 100)),
                        }
                        for e in endpoints
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": {_HTTP_OPTIONS: http_options},
    }
    if tls:
        http_options["upstream_http_protocol_options"] = {
            "auto_sni": True,
            "auto_san_validation": True,
        }
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _TYPE + "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "validation_context": {"trusted_ca": {"filename": CA_BUNDLE}}
                },
            },
        }
    return cluster


def buffer_limit(config: RouterConfig) -> int:
    """Envoy holds the whole body for the processor, then the rewritten one, which can be larger
    (a decision's system prompt, JSON-escaped): the router's limit plus room for that. Larger
    bodies get Envoy's own 413, smaller ones over the limit the processor's."""
    prompts = [len(d.system_prompt.text.encode()) for d in config.decisions if d.system_prompt]
    return config.router.max_body_bytes + REWRITE_ALLOWANCE + 2 * max(prompts, default=0)


def bootstrap(config: RouterConfig, options: EnvoyOptions) -> dict[str, Any]:
    """The bootstrap as data. Raises BackendLayoutError for endpoints one cluster cannot hold."""
    layouts = {m.name: BackendLayout.of(m) for m in config.models}
    max_body = config.router.max_body_bytes
    limits = config.router.limits
    manager = {
        "@type": _TYPE
        + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "semrouter",
        "codec_type": "AUTO",
        "normalize_path": True,
        "merge_slashes": True,
        # x-request-id: the client's kept (else Envoy makes one), seen by the processor (its
        # request log, semrouter.observe), and returned on every response.
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        "stream_idle_timeout": _seconds(
            max(MIN_STREAM_IDLE_S, *(m.timeout_s + 30 for m in config.models))
        ),
        "access_log": [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": _TYPE + "extensions.access_loggers.stream.v3.StdoutAccessLog"
                },
            }
        ],
        # The client's time and header bytes, bounded as `semrouter serve` bounds them.
        "request_headers_timeout": _seconds(limits.header_read_timeout_s),
        "request_timeout": _seconds(limits.header_read_timeout_s + limits.body_read_timeout_s),
        "max_request_headers_kb": -(-limits.max_header_bytes // 1024),
        "local_reply_config": _local_replies(options, max_body, limits),
        "route_config": {
            "name": "semrouter",
            "virtual_hosts": [
                {"name": "semrouter", "domains": ["*"], "routes": _routes(config, layouts)}
            ],
        },
        "http_filters": [
            _extproc_filter(options, observes_responses(config)),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _TYPE + "extensions.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "admin": {"address": _address(options.admin_address, options.admin_port)},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _TYPE + "extensions.resource_monitors.downstream_connections.v3."
                        "DownstreamConnectionsConfig",
                        "max_active_downstream_connections": MAX_CONNECTIONS,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "semrouter",
                    "address": _address(options.listen_address, options.listen_port),
                    "per_connection_buffer_limit_bytes": buffer_limit(config),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                _cluster(
                    EXTPROC_CLUSTER,
                    [EndpointAddress(options.extproc_host, options.extproc_port, 1.0)],
                    tls=False,
                    connect_timeout_s=1.0,
                    http2=True,
                ),
                *(
                    _cluster(
                        cluster_name(m),
                        layouts[m.name].endpoints,
                        layouts[m.name].tls,
                        m.connect_timeout_s,
                        http2=False,
                    )
                    for m in config.models
                ),
            ],
        },
    }


def render(config: RouterConfig, options: EnvoyOptions, source: str = "") -> str:
    origin = f" from {source}" if source else ""
    header = f"# Envoy bootstrap generated by `semrouter envoy-config`{origin}.\n"
    return header + yaml.safe_dump(bootstrap(config, options), sort_keys=False)
