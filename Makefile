# make install | demo | test | test-quick | bench | cuda-check      (each target installs what it needs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SOURCES := setup.py pyproject.toml lowlight_core/controls.py \
  $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install system-packages demo test test-quick bench cuda-check clean

# Debian packages for the headless napari viewer tests (Xvfb, Qt's xcb platform, Mesa GL).
SYSTEM_PACKAGES := xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libxkbcommon-x11-0 libxcb-icccm4 \
  libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0 \
  libdbus-1-3 libfontconfig1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

install: system-packages $(VENV)/.stamp-build

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

$(VENV)/.stamp-deps: requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# --no-build-isolation: build against the torch in .venv, never a freshly fetched one; LOWLIGHT_BUILD_NATIVE=1:
# compile lowlight_core._C now (without torch in the build env, setup.py makes the pure first-use-compile wheel).
$(VENV)/.stamp-build: $(VENV)/.stamp-deps $(SOURCES)
	LOWLIGHT_BUILD_NATIVE=1 $(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

demo: install
	$(PY) -m lowlight_core.demo

test: install
	LOWLIGHT_BACKEND=native $(PY) -m pytest -q -p no:cacheprovider tests

# while developing: the suite without the tests marked slow (the wheel install, the first-use build)
test-quick: install
	LOWLIGHT_BACKEND=native $(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

# BENCH_ARGS narrows the run, e.g. BENCH_ARGS='-k "1x1200x900 or first"'
BENCH_ARGS ?=
# THP_MEM_ALLOC_ENABLE=1: torch's CPU allocator asks for huge pages, so fresh 100 MB gradients do not spend
# most of a backward pass in page faults (same setting for every implementation compared).
bench: install
	THP_MEM_ALLOC_ENABLE=1 LOWLIGHT_BACKEND=native $(PY) -m pytest -q -p no:cacheprovider benchmarks --benchmark-only $(BENCH_ARGS) \
	  --benchmark-json=benchmarks/results/cpu.json
	$(PY) benchmarks/report.py benchmarks/results/cpu.json benchmarks/RESULTS.md

# Compiles and links the CUDA kernels with the local nvcc (no GPU needed) in a second venv with a CUDA
# build of torch, then runs the CPU kernels of that build once.
CUDA_VENV := .venv-cuda
cuda-check:
	test -x $(CUDA_VENV)/bin/python || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install -q torch==2.14.1 numpy ninja setuptools wheel
	CUDA_HOME=/usr/local/cuda TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1 MAX_JOBS=2 LOWLIGHT_BUILD_NATIVE=1 \
	  $(CUDA_VENV)/bin/python -m pip install -q --no-build-isolation --no-deps .
	cd /tmp && $(CURDIR)/$(CUDA_VENV)/bin/python -c "import torch, lowlight_core.ops as o; \
	  assert o.cuda_built(), 'not a CUDA build'; x = torch.rand(1, 3, 9, 7); a = torch.rand(1, 3, 2, 2); \
	  torch.testing.assert_close(o.le_curve(x, a, 8), o.reference.le_curve(x, a, 8)); print('CUDA build OK')"

clean:
	rm -rf build $(VENV) $(CUDA_VENV) lowlight_core/_C*.so *.egg-info
