"""`aloe space` and the benchmarks take the backend flags of `aloe eval` into the backends they build (no model)."""

import pytest

from aloe_bench.commands.main import main
from aloe_bench.core.backends import BackendOptions
from aloe_bench.core.errors import ConfigError


def test_aloe_space_builds_its_models_with_the_backend_flags(monkeypatch):
    import aloe_bench.space.roles as roles
    import aloe_bench.space.ui as ui

    built, served = [], {}

    class Demo:
        def launch(self, **kwargs):
            served.update(kwargs)

    def fake_build_demo(config, loader):
        served["config"] = config
        loader(config.judge_model)
        loader("ORG/visitor-choice", token="visitor-token")  # the seam's signature, as BoundedLoader calls it
        return Demo()

    monkeypatch.setattr(ui, "build_demo", fake_build_demo)
    monkeypatch.setattr(roles, "build_backend", lambda spec, options=None, **kw: built.append((spec, options, kw)))
    assert main(["space", "--device", "cuda:1", "--dtype", "bfloat16", "--judge_model", "J", "--port", "7999"]) == 0
    assert served["server_port"] == 7999 and served["config"].judge_model == "J"
    assert [(spec, kw) for spec, _, kw in built] == [("J", {}), ("ORG/visitor-choice", {"token": "visitor-token"})]
    for _, options, _ in built:
        assert isinstance(options, BackendOptions) and (options.device, options.dtype) == ("cuda:1", "bfloat16")


def test_the_space_refuses_per_role_overrides_it_cannot_apply():
    from aloe_bench.space.roles import backend_loader

    with pytest.raises(ConfigError, match="role_options"):
        backend_loader(BackendOptions(role_options={"judge": {"device": "cuda:1"}}))


def test_aloe_bench_hostile_builds_its_judge_with_the_backend_flags(monkeypatch):
    import aloe_bench.bench.hostile as hostile
    from aloe_bench.core.backends import BackendError

    seen = []

    def fake_build_backend(spec, options, **kw):
        seen.append((spec, options, kw))
        raise BackendError("no model in this test")  # stops the benchmark once its judge is asked for

    monkeypatch.setattr(hostile, "build_backend", fake_build_backend)
    assert main(["bench", "hostile", "--judge_model", "openai:j", "--judge_base_url", "http://127.0.0.1:9/v1",
                 "--api_key_env", "MY_KEY", "--request_timeout_s", "7", "--personas", "1",
                 "--role_options", '{"judge": {"max_concurrency": 3}}']) != 0  # `aloe` reports the error
    (spec, options, kw), = seen
    assert spec == "openai:j" and kw == {"base_url": "http://127.0.0.1:9/v1"}
    assert (options.api_key_env, options.request_timeout_s, options.max_concurrency) == ("MY_KEY", 7.0, 3)


def test_bench_commands_keep_their_own_backend_defaults():
    from aloe_bench.bench import faults, schedule
    from aloe_bench.commands.main import build_parser
    from aloe_bench.core.recipes import dataclass_from_args

    def options(*argv):
        return dataclass_from_args(build_parser().parse_args(["bench", *argv]), BackendOptions)

    assert options("faults").max_concurrency == 2 and options("faults", "--max_concurrency", "5").max_concurrency == 5
    latency = options("schedule")
    assert (latency.max_concurrency, latency.api_key_env) == (64, "ALOE_LATENCY_SERVER_KEY")
    assert options("eval", "--device", "cpu", "--batch_size", "4").batch_size == 4
    assert options("space", "--dtype", "float32").dtype == "float32"
    assert options("faults") == faults.DEFAULT_OPTIONS and options("schedule") == schedule.DEFAULT_OPTIONS


def test_bench_faults_takes_its_timeout_and_retries_from_its_own_flags():
    from aloe_bench.bench.faults import _with_patience

    options = _with_patience(BackendOptions(max_concurrency=2), 30.0, 1)
    assert (options.request_timeout_s, options.request_max_retries, options.max_concurrency) == (30.0, 1, 2)
    with pytest.raises(ConfigError, match="--timeout_s"):
        _with_patience(BackendOptions(request_timeout_s=5.0), 30.0, 4)
