# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install, then run the ALOE benchmark on the embedded default model
#   make test   create .venv with the test tools, then run the whole test suite
.PHONY: run test bench

run:
	bash scripts/setup.sh
	.venv/bin/aloe eval --output_dir runs/embedded

test:
	bash scripts/setup.sh --test
	.venv/bin/python -m pytest

bench:
	bash scripts/setup.sh
	.venv/bin/aloe bench eval --output runs/bench_eval.json
