# Quick start: `make demo` (train + export + translate on the embedded synthetic set), `make test` (the test suite; its
# browser tests need a Chromium: Debian's `chromium` package, which .ci/run installs when missing).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# torch/torchvision as shipped for this platform; override (e.g. TORCH_PIN=) to let pip choose within the ranges
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: venv demo test test-kernels test-gpu bench build-ops clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN) -e ".[test,app]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) scripts/demo.py

# the simulated-CUDA placement test runs in a second pytest process (tests/conftest.py says why); when torch's
# FakeTensorMode kills that process with a signal (once in 6 runs of 2026-12-07, in CI), it runs
# once more; a failed test is never rerun
DEVICE_TEST := tests/translate/test_device_placement.py
test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)
	$(PY) -m pytest -q $(DEVICE_TEST) $(PYTEST_ARGS) || { rc=$$?; [ $$rc -gt 128 ] || exit $$rc; \
	  echo "$(DEVICE_TEST): the process died of signal $$((rc - 128)) (torch's FakeTensorMode); running it once more"; \
	  $(PY) -m pytest -q $(DEVICE_TEST) $(PYTEST_ARGS); }

# the CUDA kernels of csrc/ compiled for the CPU (HIP-CPU) and run through the operators (docs/kernels.md); their
# own pytest process, as their library registers the same operators as the nvcc build that `make test` loads
test-kernels: venv
	MAX_JOBS=$${MAX_JOBS:-1} $(PY) -m pytest -q tests/kernels $(PYTEST_ARGS)

test-gpu: venv
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/train_throughput.py

# ahead-of-time build of the CUDA ops (csrc/); ARCH="8.0;9.0" for several GPU generations (default: this GPU, or 9.0)
build-ops: venv
	CUDA_HOME=$${CUDA_HOME:-/usr/local/cuda} $(PY) scripts/build_ops.py $(if $(ARCH),--arch "$(ARCH)")

clean:
	rm -rf runs demo_out wandb build .pytest_cache
