"""The one way into the backends: `build_backend` over a registry of backend kinds, whose options are declared
once as fields of `BackendOptions`."""

import inspect
from dataclasses import fields

import pytest

from aloe_bench.core.backends import BACKEND_KINDS, BackendError, BackendOptions, build_backend
from aloe_bench.core.backends.options import option_names
from aloe_bench.core.errors import ConfigError
from aloe_bench.harness import EvalConfig


def test_endpoint_options_reach_an_openai_backend_and_are_shared_per_spec():
    options = BackendOptions(max_concurrency=5, request_timeout_s=3.0, request_max_retries=1, batch_size=8,
                             device="cpu")
    backend = build_backend("openai:m", options, base_url="http://127.0.0.1:9/v1")
    assert (backend.timeout_s, backend.max_retries, backend.max_concurrency) == (3.0, 1, 5)
    assert build_backend("openai:m", options, base_url="http://127.0.0.1:9/v1") is backend
    other = build_backend("openai:m", BackendOptions(max_concurrency=5, request_timeout_s=4.0),
                          base_url="http://127.0.0.1:9/v1")
    assert other is not backend and other.timeout_s == 4.0


def test_eval_flags_parse_into_backend_options():
    from aloe_bench.commands.main import build_parser
    from aloe_bench.core.recipes import dataclass_from_args

    args = build_parser().parse_args(["eval", "--batch_size", "4", "--max_concurrency", "7", "--request_timeout_s",
                                      "9.0", "--tensor_parallel_size", "2", "--enable_prefix_caching", "true",
                                      "--engine", "vllm", "--api_key_env", "MY_KEY", "--request_max_retries", "0"])
    options = dataclass_from_args(args, BackendOptions)
    assert not {f.name for f in fields(BackendOptions)} & {f.name for f in fields(EvalConfig)}  # declared once
    assert (options.batch_size, options.max_concurrency, options.request_timeout_s, options.request_max_retries) == (
        4, 7, 9.0, 0)
    assert (options.tensor_parallel_size, options.enable_prefix_caching, options.engine) == (2, True, "vllm")
    assert "api_key_env" not in options.for_kind("openai") and "engine" not in options.for_kind("vllm")
    assert "gpu_memory_utilization" not in options.for_kind("vllm")  # None: the backend's own default


def test_every_registered_kind_declares_its_options_once_and_its_factory_takes_them():
    declared = {}
    for f in fields(BackendOptions):
        for kind in f.metadata.get("kinds", ()):
            assert kind in BACKEND_KINDS, f"{f.name} is tagged with unknown kind {kind!r}"
            declared.setdefault(kind, []).append(f.name)
    assert set(declared) == set(BACKEND_KINDS)
    for name, kind in BACKEND_KINDS.items():
        assert kind.options == tuple(declared[name])
        assert len(set(kind.options)) == len(kind.options)
        parameters = inspect.signature(kind.load()).parameters
        missing = [option for option in kind.options if option not in parameters]
        assert not missing, f"{name}: its factory does not take {missing}"


def test_role_options_override_one_role_and_typos_are_refused():
    options = BackendOptions(device="cpu", role_options={"judge": {"device": "cuda:1", "batch_size": 4}})
    assert options.for_role("judge").device == "cuda:1" and options.for_role("judge").batch_size == 4
    assert options.for_role("model").device == "cpu" and options.for_role("model").role_options is None
    assert BackendOptions(role_options='{"user": {"request_timeout_s": 5}}').for_role("user").request_timeout_s == 5
    with pytest.raises(ConfigError, match=r"role_options\.judge\.devise: not a backend option"):
        BackendOptions(role_options={"judge": {"devise": "cuda"}})
    with pytest.raises(ConfigError, match=r"role_options\.jduge: no such role"):
        BackendOptions(role_options={"jduge": {"device": "cuda"}}).check_roles(("model", "user", "judge"))
    with pytest.raises(ConfigError, match="role_options: not a JSON object"):
        BackendOptions(role_options="{judge")
    assert "role_options" not in option_names()


def test_someone_elses_token_is_refused_by_kinds_that_run_on_the_operators_credentials():
    for spec, options in (("openai:m", BackendOptions()), ("ORG/NAME", BackendOptions(engine="vllm"))):
        with pytest.raises(BackendError, match="operator's own credentials"):
            build_backend(spec, options, base_url="http://127.0.0.1:9/v1", token=False)
