"""The one place that builds backends from specs and run options."""

from aloe_bench.core.backend_factory import BackendOptions, build_backend
from aloe_bench.harness import EvalConfig
from aloe_bench.harness.runner import backend_options


def test_endpoint_options_reach_an_openai_backend_and_are_shared_per_spec():
    options = BackendOptions(max_concurrency=5, timeout_s=3.0, max_retries=1, batch_size=8, device="cpu")
    backend = build_backend("openai:m", options, base_url="http://127.0.0.1:9/v1")
    assert (backend.timeout_s, backend.max_retries) == (3.0, 1)
    assert build_backend("openai:m", options, base_url="http://127.0.0.1:9/v1") is backend
    other = build_backend("openai:m", BackendOptions(max_concurrency=5, timeout_s=4.0), base_url="http://127.0.0.1:9/v1")
    assert other is not backend and other.timeout_s == 4.0


def test_eval_config_maps_onto_backend_options():
    cfg = EvalConfig(batch_size=4, max_concurrency=7, request_timeout_s=9.0, tensor_parallel_size=2,
                     enable_prefix_caching=True, engine="vllm", api_key_env="MY_KEY")
    options = backend_options(cfg, max_retries=0)
    assert (options.batch_size, options.max_concurrency, options.timeout_s, options.max_retries) == (4, 7, 9.0, 0)
    assert (options.tensor_parallel_size, options.enable_prefix_caching, options.engine) == (2, True, "vllm")
    assert options.api_key_env == "MY_KEY" and "api_key_env" not in options.backend_kwargs()
    assert "gpu_memory_utilization" not in options.backend_kwargs()  # None: the backend's own default
