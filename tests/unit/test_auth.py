"""Client authentication and quotas (router.auth): keys, buckets, authorization, header policy.

The pipeline is driven directly; the HTTP transport through a real socket against the recording
stand-in backend; the ext_proc server with real protobuf messages in both request-body modes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from semrouter.auth import AdminGate, KeyStore, Quotas, TokenBucket, backend_credentials
from semrouter.auth.keys import is_loopback, presented_key
from semrouter.bench.standin import StandIn, start_standin
from semrouter.cli.main import main
from semrouter.config import ConfigError, RouterConfig, parse_config
from semrouter.config.schema import ClientKey, ModelConfig
from semrouter.extproc.server import ExtProcServicer
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.flow import Pipeline, estimated_tokens
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from semrouter.proxy.upstream import Upstreams
from tests.conftest import minimal_config
from tests.servers import serving
from tests.unit.test_extproc import drive, mutations, request_body, request_headers

WEB_KEY = "sk-web-0123456789abcdef0123456789abcdef"
GATEWAY_KEY = "sk-gw-fedcba9876543210fedcba9876543210"
ADMIN_KEY = "sk-admin-00112233445566778899aabbccddeeff"
BACKEND_KEY = "sk-backend-99887766554433221100ffeeddccbbaa"
ENV = {"WEB_KEY": WEB_KEY, "GATEWAY_KEY": GATEWAY_KEY}


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def auth_data(**auth: Any) -> dict[str, Any]:
    """A minimal config with auth on: 'web' (fast model only, tenant acme) and a trusted
    'gateway'; `auth` overrides router.auth's fields."""
    data = minimal_config()
    data["router"] = {
        "auth": {
            "enabled": True,
            "keys": [
                {"name": "web", "key_env": "WEB_KEY", "tenant": "acme", "models": ["fast"]},
                {"name": "gateway", "key_env": "GATEWAY_KEY", "trusted": True},
            ],
            **auth,
        }
    }
    return data


def auth_config(**auth: Any) -> RouterConfig:
    return parse_config(auth_data(**auth), env={})


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def pipeline(config: RouterConfig) -> Pipeline:
    return Pipeline(Router(config))


def bearer(key: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **extra}


def chat(text: str, model: str = "auto", **extra: Any) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


def problems(config: RouterConfig, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        KeyStore.load(config.router.auth, env)
    return caught.value.errors


# --- keys: hashing, loading, finding --------------------------------------------------------


def test_env_keys_are_kept_only_as_digests() -> None:
    store = KeyStore.load(auth_config().router.auth, ENV)
    found = store.find(WEB_KEY)
    assert found is not None and found.name == "web"
    assert store.find(GATEWAY_KEY).name == "gateway"  # type: ignore[union-attr]
    assert store.find(WEB_KEY + "x") is None
    assert store.find("") is None
    kept = repr(vars(store))
    assert WEB_KEY not in kept and GATEWAY_KEY not in kept
    assert hashlib.sha256(WEB_KEY.encode()).digest() in dict(store._keys)


def test_keys_file_holds_digests(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# rotated 2026-12\n\ngateway  {sha256(GATEWAY_KEY).upper()}\n")
    data = auth_data(keys_file=str(keys_file))
    del data["router"]["auth"]["keys"][1]["key_env"]
    store = KeyStore.load(parse_config(data, env={}).router.auth, {"WEB_KEY": WEB_KEY})
    assert store.find(GATEWAY_KEY).name == "gateway"  # type: ignore[union-attr]
    assert store.find(sha256(GATEWAY_KEY)) is None  # the digest itself is not a key


def test_key_loading_problems_are_all_reported_with_their_path(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(
        f"web {sha256('w' * 20)}\n"  # web has key_env too
        f"stranger {sha256('s' * 20)}\n"
        f"gateway {GATEWAY_KEY}\n"  # a key pasted where its digest belongs
        f"gateway {sha256(GATEWAY_KEY)}\n"
        f"gateway {sha256(GATEWAY_KEY)}\n"
    )
    data = auth_data(keys_file=str(keys_file))
    del data["router"]["auth"]["keys"][1]["key_env"]
    data["router"]["auth"]["keys"].append({"name": "ops", "key_env": "OPS_KEY"})
    data["router"]["auth"]["keys"].append({"name": "missing"})
    data["router"]["auth"]["keys"].append({"name": "twin", "key_env": "TWIN_KEY"})
    errors = problems(
        parse_config(data, env={}),
        {"WEB_KEY": WEB_KEY, "OPS_KEY": "short", "TWIN_KEY": WEB_KEY},
    )
    at = f"router.auth.keys_file: {keys_file}"
    assert errors == [
        f"{at} line 2: key 'stranger' is not in router.auth.keys",
        f"{at} line 3: expected '<key name> <sha256 hex digest, 64 characters>'",
        f"{at} line 5: duplicate key name 'gateway'",
        "router.auth.keys[0]: key 'web' has key_env and is in keys_file too; give one",
        "router.auth.keys[2].key_env: the key in 'OPS_KEY' is shorter than 16 characters; "
        "use a random token (e.g. openssl rand -hex 32)",
        f"router.auth.keys[3]: key 'missing' has no key_env and is not in keys_file {keys_file}",
        "router.auth.keys[4]: key 'twin' is the same key as 'web'",
    ]
    assert not any(GATEWAY_KEY in e or WEB_KEY in e for e in errors)


def test_unset_variable_and_unreadable_file(tmp_path: Path) -> None:
    assert problems(auth_config(), {"WEB_KEY": WEB_KEY}) == [
        "router.auth.keys[1].key_env: environment variable 'GATEWAY_KEY' is not set"
    ]
    nowhere = tmp_path / "nope"
    assert problems(auth_config(keys_file=str(nowhere)), ENV) == [
        f"router.auth.keys_file: cannot read {nowhere}: No such file or directory"
    ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            lambda d: d["router"]["auth"]["keys"][0].update(models=["fast", "gpt-9"]),
            "router.auth.keys[0].models[1]: unknown model 'gpt-9'",
        ),
        (
            lambda d: d["router"]["auth"]["keys"][0].update(decisions=["default", "mth"]),
            "router.auth.keys[0].decisions[1]: unknown decision 'mth'",
        ),
        (
            lambda d: d["router"]["auth"]["keys"][1].update(name="web"),
            "router.auth.keys[1].name: duplicate key name 'web'",
        ),
        (
            lambda d: d["router"]["auth"]["keys"][1].pop("key_env"),
            "router.auth.keys[1]: key 'gateway' has no key_env and there is no keys_file",
        ),
        (
            lambda d: d["router"]["auth"].update(keys=[]),
            "router.auth.keys: auth is enabled but no key is configured",
        ),
        (
            lambda d: d["models"][0].update(forward_client_key=True),
            "models[0].forward_client_key: cannot be used with router.auth enabled (the "
            "client's Authorization header carries its router key, never sent to a backend)",
        ),
    ],
)
def test_schema_checks_keys(change: Any, error: str) -> None:
    data = auth_data()
    change(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    assert caught.value.errors == [error]


def test_byok_and_a_backend_key_exclude_each_other() -> None:
    data = minimal_config()
    data["models"][0].update(forward_client_key=True, api_key_env="FAST_KEY")
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    assert caught.value.errors[0].startswith("models[0].forward_client_key: give either")


def test_config_validate_reports_an_unset_key_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(auth_data()))
    monkeypatch.setenv("WEB_KEY", WEB_KEY)
    monkeypatch.delenv("GATEWAY_KEY", raising=False)
    assert main(["config", "validate", str(path)]) == 2
    assert "router.auth.keys[1].key_env: environment variable 'GATEWAY_KEY' is not set" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("GATEWAY_KEY", GATEWAY_KEY)
    assert main(["config", "validate", str(path)]) == 0


def test_the_default_configs_commented_example_is_valid(tmp_path: Path) -> None:
    default = Path("src/semrouter/config/default.yaml").read_text()
    data = yaml.safe_load(default)
    assert "auth" not in data["router"]  # off by default
    block = re.search(r"^  # auth:\n(?:  #.*\n)+", default, re.MULTILINE)
    assert block is not None
    uncommented = "\n".join(line.replace("  # ", "  ", 1) for line in block[0].splitlines())
    data["router"]["auth"] = yaml.safe_load(uncommented)["auth"]
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"gateway {sha256(GATEWAY_KEY)}\n")
    data["router"]["auth"]["keys_file"] = str(keys_file)
    auth = parse_config(data, env={"SEMROUTER_FAST_URL": "http://x/v1"}).router.auth
    store = KeyStore.load(auth, {"WEB_APP_KEY": WEB_KEY})
    assert store.find(GATEWAY_KEY).trusted  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer  abc "}, "abc"),
        ({"x-api-key": "abc"}, "abc"),
        ({"authorization": "Basic dXNlcg==", "x-api-key": "abc"}, "abc"),
        ({"authorization": "Bearer "}, None),
        ({"x-api-key": " "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(headers) == key


# --- authentication and tenants through the pipeline ----------------------------------------


def test_without_a_valid_key_the_client_gets_401(env: None) -> None:
    flow = pipeline(auth_config())
    for headers, message in [
        ({}, "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"),
        (bearer("sk-not-a-configured-key-at-all"), "Invalid API key"),
    ]:
        with pytest.raises(RouterError) as caught:
            flow.authenticate(headers)
        assert (caught.value.status, caught.value.type, caught.value.code) == (
            401,
            "authentication_error",
            "invalid_api_key",
        )
        assert caught.value.message == message
    assert flow.authenticate({"x-api-key": WEB_KEY}).name == "web"  # type: ignore[union-attr]


def test_auth_off_authenticates_nobody() -> None:
    flow = pipeline(parse_config(minimal_config(), env={}))
    assert flow.authenticate({}) is None


def test_tenant_header_is_honoured_only_from_trusted_keys(env: None) -> None:
    flow = pipeline(auth_config())
    web = flow.authenticate(bearer(WEB_KEY, **{"x-semrouter-tenant": "evil"}))
    assert web is not None and web.tenant == "acme"
    gateway = flow.authenticate(bearer(GATEWAY_KEY, **{"x-semrouter-tenant": "team-7"}))
    assert gateway is not None and gateway.tenant == "team-7"
    assert flow.authenticate(bearer(GATEWAY_KEY)).tenant == "gateway"  # type: ignore[union-attr]
    with pytest.raises(RouterError) as caught:
        flow.authenticate(bearer(GATEWAY_KEY, **{"x-semrouter-tenant": "a/b"}))
    assert (caught.value.status, caught.value.code) == (400, "invalid_tenant")


async def test_prepared_carries_tenant_and_key_name(env: None) -> None:
    flow = pipeline(auth_config())
    headers = bearer(GATEWAY_KEY, **{"x-semrouter-tenant": "team-7"})
    prepared = await flow.prepare(chat("hello"), headers)  # authenticates when not given one
    assert (prepared.tenant, prepared.key_name) == ("team-7", "gateway")
    assert prepared.headers["x-semrouter-tenant"] == "team-7"
    off = await pipeline(parse_config(minimal_config(), env={})).prepare(chat("hello"), {})
    assert (off.tenant, off.key_name) == (None, None)
    assert "x-semrouter-tenant" not in off.headers


# --- authorization: models and decisions ----------------------------------------------------


async def test_direct_request_for_a_disallowed_model_is_403_before_routing(
    env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = pipeline(auth_config())

    async def no_routing(_chat: Any) -> Any:
        raise AssertionError("routed")

    monkeypatch.setattr(flow.router, "route", no_routing)
    principal = flow.authenticate(bearer(WEB_KEY))
    for model in ("reasoner", "qwen3-id"):  # by name and by the backend's id
        with pytest.raises(RouterError) as caught:
            await flow.prepare(chat("hi", model=model), {}, principal)
        assert (caught.value.status, caught.value.type, caught.value.code) == (
            403,
            "permission_error",
            "forbidden",
        )
        assert caught.value.message == "API key 'web' may not use model 'reasoner'"


async def test_routed_request_to_a_disallowed_model_or_decision_is_403(env: None) -> None:
    flow = pipeline(auth_config())
    web = flow.authenticate(bearer(WEB_KEY))
    with pytest.raises(RouterError) as caught:
        await flow.prepare(chat("prove this integral converges"), {}, web)
    assert caught.value.status == 403
    assert caught.value.message == "API key 'web' may not use model 'reasoner'"
    assert (await flow.prepare(chat("hello"), {}, web)).route.model.name == "fast"

    data = auth_data()
    data["router"]["auth"]["keys"][1]["decisions"] = ["default"]
    flow = pipeline(parse_config(data, env={}))
    gateway = flow.authenticate(bearer(GATEWAY_KEY))
    with pytest.raises(RouterError) as caught:
        await flow.prepare(chat("prove this integral converges"), {}, gateway)
    assert caught.value.message == "API key 'gateway' may not use decision 'math'"
    direct = await flow.prepare(chat("prove it", model="reasoner"), {}, gateway)
    assert direct.route.model.name == "reasoner"  # decisions govern routed requests only


# --- quotas ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_continuously_up_to_its_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(60, clock)  # one per second
    assert bucket.wait_s(60) == 0
    bucket.take(60)
    assert bucket.wait_s(1) == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.wait_s(1) == pytest.approx(0.5)
    clock.now += 3600
    assert bucket.wait_s(60) == 0
    assert bucket.level == 60  # never more than one minute's allowance


def limited(**limits: int) -> ClientKey:
    return ClientKey(name="k", key_env="K", **limits)


def test_requests_per_minute() -> None:
    clock = Clock()
    quotas = Quotas([limited(requests_per_minute=2)], clock)
    assert quotas.charge("k", 10_000) is None
    assert quotas.charge("k", 10_000) is None
    refusal = quotas.charge("k", 1)
    assert refusal is not None
    assert (refusal.limit, refusal.per_minute) == ("requests_per_minute", 2)
    assert refusal.retry_after_s == pytest.approx(30.0)
    clock.now += 30
    assert quotas.charge("k", 1) is None
    assert quotas.charge("unlimited", 1) is None


def test_tokens_per_minute_and_a_refusal_charges_nothing() -> None:
    clock = Clock()
    quotas = Quotas([limited(requests_per_minute=60, tokens_per_minute=600)], clock)
    assert quotas.charge("k", 500) is None
    refusal = quotas.charge("k", 200)  # 100 left: 100 more come in 10 s
    assert refusal is not None and refusal.limit == "tokens_per_minute"
    assert refusal.retry_after_s == pytest.approx(10.0)
    for _ in range(58):  # the refused request took no request either: 59 of 60 left
        assert quotas.charge("k", 0) is None
    assert quotas.charge("k", 0) is None
    refusal = quotas.charge("k", 0)
    assert refusal is not None and refusal.limit == "requests_per_minute"
    never = quotas.charge("k", 601)
    assert never is not None and never.retry_after_s is None


async def test_quota_refusal_is_429_with_retry_after(env: None) -> None:
    data = auth_data()
    data["router"]["auth"]["keys"][0].update(requests_per_minute=1, tokens_per_minute=1000)
    flow = pipeline(parse_config(data, env={}))
    web = flow.authenticate(bearer(WEB_KEY))
    await flow.prepare(chat("hello"), {}, web)
    with pytest.raises(RouterError) as caught:
        await flow.prepare(chat("hello"), {}, web)
    error = caught.value
    assert (error.status, error.type, error.code) == (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    )
    assert 55 <= int(error.headers()["retry-after"]) <= 60
    with pytest.raises(RouterError) as caught:
        await flow.prepare(chat("hello", max_tokens=5000), {}, flow.authenticate(bearer(WEB_KEY)))
    assert (caught.value.code, caught.value.headers()) == ("request_exceeds_quota", {})
    other = flow.authenticate(bearer(GATEWAY_KEY))
    assert (await flow.prepare(chat("hello"), {}, other)).key_name == "gateway"  # its own buckets


async def test_estimated_tokens_count_the_prompt_and_the_generation_cap() -> None:
    data = minimal_config()
    data["decisions"][0]["max_tokens"] = 100
    flow = pipeline(parse_config(data, env={}))
    for raw, expected in [
        (chat("x" * 400), 100),  # no count from the signals: characters / 4
        (chat("x" * 400, max_tokens=50), 150),
        (chat("x" * 400, max_completion_tokens=70), 170),
        (chat("prove " + "x" * 394, max_tokens=5000), 200),  # the decision caps it at 100
    ]:
        prepared = await flow.prepare(raw, {})
        assert estimated_tokens(prepared.chat, prepared.route, json.loads(prepared.body)) == (
            expected
        )


# --- what backends get ----------------------------------------------------------------------


def model(**fields: Any) -> ModelConfig:
    return ModelConfig(name="m", endpoints=[{"url": "http://b/v1"}], **fields)


CLIENT = {"authorization": f"Bearer {WEB_KEY}", "x-api-key": WEB_KEY, "accept": "*/*"}


def test_backend_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M_KEY", BACKEND_KEY)
    assert backend_credentials(model(), CLIENT) == {}
    assert backend_credentials(model(api_key_env="M_KEY"), CLIENT) == {
        "authorization": f"Bearer {BACKEND_KEY}"
    }
    assert backend_credentials(model(api_key_env="UNSET_M_KEY"), CLIENT) == {}
    assert backend_credentials(model(forward_client_key=True), CLIENT) == {
        "authorization": f"Bearer {WEB_KEY}",
        "x-api-key": WEB_KEY,
    }
    # serve's upstream request: the same policy
    assert Upstreams()._headers(model(), CLIENT) == {
        "content-type": "application/json",
        "accept": "*/*",
    }


@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
async def test_extproc_removes_client_credentials_and_sets_the_backends(
    streamed: bool, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAST_KEY", BACKEND_KEY)
    data = auth_data()
    data["models"][0]["api_key_env"] = "FAST_KEY"
    servicer = ExtProcServicer(pipeline(parse_config(data, env={})))
    sent = {"authorization": f"Bearer {WEB_KEY}", "x-api-key": WEB_KEY, "x-semrouter-tenant": "x"}
    replies = await drive(
        servicer, [request_headers(streamed=streamed, **sent), request_body(chat("hello"))]
    )
    if streamed:  # the held-back headers answer carries the header changes
        common = replies[0].request_headers.response
        assert replies[-1].request_body.response.body_mutation.body
    else:
        common = replies[1].request_body.response
    headers = mutations(common)
    assert headers["authorization"] == f"Bearer {BACKEND_KEY}"
    assert headers["x-semrouter-tenant"] == "acme"  # the key's, not the untrusted header's
    assert list(common.header_mutation.remove_headers) == ["x-api-key"]


@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
async def test_extproc_without_backend_key_sends_no_credentials(streamed: bool) -> None:
    servicer = ExtProcServicer(pipeline(parse_config(minimal_config(), env={})))
    sent = {"authorization": "Bearer client", "x-api-key": "client", "x-semrouter-tenant": "x"}
    replies = await drive(
        servicer, [request_headers(streamed=streamed, **sent), request_body(chat("hello"))]
    )
    common = replies[0 if streamed else 1].WhichOneof("response")
    answer = getattr(replies[0 if streamed else 1], common).response
    assert "authorization" not in mutations(answer)
    assert sorted(answer.header_mutation.remove_headers) == [
        "authorization",
        "x-api-key",
        "x-semrouter-tenant",
    ]


async def test_extproc_byok_leaves_the_clients_credentials() -> None:
    data = minimal_config()
    data["models"][0]["forward_client_key"] = True
    servicer = ExtProcServicer(pipeline(parse_config(data, env={})))
    replies = await drive(
        servicer,
        [request_headers(authorization="Bearer own"), request_body(chat("hi", model="fast"))],
    )
    answer = replies[1].request_body.response
    assert mutations(answer)["authorization"] == "Bearer own"
    assert list(answer.header_mutation.remove_headers) == []


async def test_extproc_refuses_a_missing_key_at_the_headers(
    env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = pipeline(auth_config())

    async def no_parsing(_raw: bytes) -> Any:
        raise AssertionError("parsed")

    monkeypatch.setattr(flow, "parse", no_parsing)
    for streamed in (False, True):
        replies = await drive(
            ExtProcServicer(flow),
            [request_headers(streamed=streamed, authorization="Bearer nope"), request_body(b"{}")],
        )
        assert len(replies) == 1
        immediate = replies[0].immediate_response
        assert immediate.status.code == 401
        assert json.loads(immediate.body)["error"]["code"] == "invalid_api_key"
    assert flow.admission.in_flight == 0


# --- the HTTP transport: 401 before the body, admin endpoints, no secrets -------------------


@pytest.fixture
async def recording() -> Any:
    backend = StandIn(record=True)
    runner, port = await start_standin(backend)
    yield backend, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def request(
    url: str, path: str, headers: dict[str, str], data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            "POST" if data is not None else "GET", url + path, data=data, headers=headers
        ) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def test_serve_end_to_end_in_process(
    recording: Any, env: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend, backend_url = recording
    monkeypatch.setenv("SEMROUTER_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("FAST_KEY", BACKEND_KEY)
    data = auth_data()
    for m in data["models"]:
        m["endpoints"] = [{"url": backend_url}]
    data["models"][0]["api_key_env"] = "FAST_KEY"
    proxy = ProxyApp(Router(parse_config(data, env={})))
    parsed: list[bytes] = []
    parse = proxy.pipeline.parse

    async def counting_parse(raw: bytes) -> Any:
        parsed.append(raw)
        return await parse(raw)

    monkeypatch.setattr(proxy.pipeline, "parse", counting_parse)
    answers = []
    caplog.set_level("DEBUG")
    async with serving(proxy.app) as url:
        chat_path = "/v1/chat/completions"
        answers.append(await request(url, chat_path, {}, chat("hello")))
        assert answers[-1][0] == 401 and not parsed  # no body parsed, nothing classified
        assert json.loads(answers[-1][2])["error"]["type"] == "authentication_error"
        answers.append(await request(url, "/api/v1/classify", {}, b'{"text": "hi"}'))
        assert answers[-1][0] == 401
        answers.append(await request(url, chat_path, bearer(WEB_KEY), chat("hi", model="reasoner")))
        assert answers[-1][0] == 403
        answers.append(await request(url, chat_path, bearer(WEB_KEY), chat("hello")))
        assert answers[-1][0] == 200
        assert answers[-1][1]["x-semrouter-tenant"] == "acme"
        assert backend.headers[-1]["authorization"] == f"Bearer {BACKEND_KEY}"
        answers.append(await request(url, "/api/v1/classify", bearer(WEB_KEY), b'{"text": "hi"}'))
        assert answers[-1][0] == 200
        answers.append(await request(url, "/metrics", {}))
        assert answers[-1][0] == 401
        answers.append(await request(url, "/metrics", bearer(WEB_KEY)))  # a client key: no
        assert answers[-1][0] == 401
        answers.append(await request(url, "/metrics", bearer(ADMIN_KEY)))
        assert answers[-1][0] == 200
        metrics = answers[-1][2].decode()
        assert 'semrouter_client_requests_total{key="web",outcome="routed"} 1.0' in metrics
        assert 'semrouter_client_requests_total{key="web",outcome="forbidden"} 1.0' in metrics
        for path in ("/health", "/ready"):
            assert (await request(url, path, {}))[0] == 200
    assert all(WEB_KEY not in json.dumps(h) for h in backend.headers)  # never to the backend
    secrets = (WEB_KEY, GATEWAY_KEY, ADMIN_KEY, BACKEND_KEY)
    said = [json.dumps(headers) + body.decode() for _, headers, body in answers] + [caplog.text]
    assert not [s for s in secrets for text in said if s in text]


async def test_metrics_without_an_admin_key_answer_loopback_only(
    env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEMROUTER_ADMIN_KEY", raising=False)
    proxy = ProxyApp(Router(auth_config()))
    async with serving(proxy.app) as url:
        assert (await request(url, "/metrics", {}))[0] == 200  # from 127.0.0.1
    with pytest.raises(RouterError) as caught:
        proxy.pipeline.authorize_admin({}, "10.1.2.3")
    assert caught.value.status == 403
    assert "SEMROUTER_ADMIN_KEY" in caught.value.message


def test_admin_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = auth_config().router.auth
    keyless = AdminGate.load(auth, {})
    assert keyless.allows({}, "127.0.0.1") and keyless.allows({}, "::1")
    assert keyless.allows({}, "::ffff:127.0.0.1")
    assert not keyless.allows({}, "10.0.0.1") and not keyless.allows({}, None)
    keyed = AdminGate.load(auth, {"SEMROUTER_ADMIN_KEY": ADMIN_KEY})
    assert keyed.allows(bearer(ADMIN_KEY), "10.0.0.1")
    assert not keyed.allows({}, "127.0.0.1")  # with a key, loopback needs it too
    assert not keyed.allows(bearer(WEB_KEY), "127.0.0.1")
    assert is_loopback("127.0.0.5") and not is_loopback("localhost")


async def test_auth_off_keeps_metrics_open() -> None:
    proxy = ProxyApp(Router(parse_config(minimal_config(), env={})))
    proxy.pipeline.authorize_admin({}, "10.1.2.3")  # no error


def test_envoy_config_refuses_to_fail_open_with_auth(
    tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(auth_data()))
    ports = ["--listen-port", "8080", "--extproc-port", "9002", "--admin-port", "9901"]
    assert main(["envoy-config", "--config", str(path), *ports, "--failure-mode-allow"]) == 2
    assert "--failure-mode-allow cannot be used with router.auth" in capsys.readouterr().err
    assert main(["envoy-config", "--config", str(path), *ports]) == 0


async def test_extproc_metrics_port_passes_the_same_admin_check(
    env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semrouter.extproc.metrics import serve_metrics
    from tests.servers import free_port

    monkeypatch.setenv("SEMROUTER_ADMIN_KEY", ADMIN_KEY)
    served = pipeline(auth_config())
    port = free_port()
    runner = await serve_metrics(served, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    try:
        assert (await request(url, "/metrics", {}))[0] == 401
        assert (await request(url, "/metrics", bearer(WEB_KEY)))[0] == 401
        status, _, body = await request(url, "/metrics", bearer(ADMIN_KEY))
        assert status == 200 and b"semrouter_requests_total" in body
    finally:
        await runner.cleanup()
