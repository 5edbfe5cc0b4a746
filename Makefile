# dyndnn_ros developer entry points. Every target creates or reuses the pinned virtual
# environment (.venv) and builds the ROS package with colcon into install/ by itself.
SHELL := /bin/bash
# The venv lives outside the source tree (CMake refuses exported include paths inside it) and is
# keyed by the lock file's hash, so every clone reuses it until requirements.txt changes.
LOCK_HASH := $(shell sha1sum requirements.txt | cut -c1-12)
VENV ?= $(HOME)/.cache/dyndnn_ros/venv-$(LOCK_HASH)
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
# Each test run and demo gets its own DDS domain so parallel runs never see each other,
# and discovery stays on loopback.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONUNBUFFERED := 1
# launch, launch_testing and the `ros2` command are not on PyPI. Where the venv has no `launch` and
# the upstream sources lie beside the checkout (../shared/ros2-tooling), they are built once into an
# underlay keyed by their content and the venv, and sourced before the package. Elsewhere the
# launch tests skip with the reason.
TOOLING_KIT := $(abspath ../shared/ros2-tooling)
TOOLING_KEY := $(shell [ -x $(TOOLING_KIT)/build.sh ] && { cd $(TOOLING_KIT) && \
  find . -type f | LC_ALL=C sort | xargs sha1sum; echo $(VENV); } | sha1sum | cut -c1-12)
TOOLING := $(if $(TOOLING_KEY),$(HOME)/.cache/dyndnn_ros/ros2-tooling-$(TOOLING_KEY),/nonexistent)
SOURCE_TOOLING := { [ ! -f $(TOOLING)/.built ] || source $(TOOLING)/setup.bash; }
WITH_ROS := source $(VENV)/bin/activate && $(SOURCE_TOOLING) && source install/setup.bash &&

.PHONY: demo test bench soak build venv venv-path lock clean tooling colcon-test models dataset

venv: $(VENV_STAMP)

venv-path:
	@echo $(VENV)

$(VENV_STAMP):
	@echo "==> creating the pinned virtual environment $(VENV) (first run only, about 2 minutes)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) tools/fix_ros_wheel_cmake_paths.py
	touch $@

tooling: $(VENV_STAMP)
	@if $(PY) -c 'import launch, launch_ros, launch_testing' 2>/dev/null || [ -f $(TOOLING)/.built ]; \
	then :; \
	elif [ -z "$(TOOLING_KEY)" ]; then \
	  echo "==> no launch/ros2 command here and no ../shared/ros2-tooling: launch tests will skip"; \
	else \
	  echo "==> building launch, launch_testing and the ros2 command into $(TOOLING) (once, ~30 s)"; \
	  rm -rf $(TOOLING) && $(TOOLING_KIT)/build.sh $(VENV) $(TOOLING) && touch $(TOOLING)/.built; \
	fi

build: tooling
	@echo "==> colcon build (interfaces + Python package + node executables) into install/"
	mkdir -p build && source $(VENV)/bin/activate && $(SOURCE_TOOLING) && \
	  CMAKE_PREFIX_PATH=$$CMAKE_PREFIX_PATH:$$VIRTUAL_ENV AMENT_PREFIX_PATH=$$AMENT_PREFIX_PATH:$$VIRTUAL_ENV \
	  colcon --log-base log build --paths . --build-base build/colcon --install-base install \
	    --cmake-args -DPython3_EXECUTABLE=$(abspath $(PY)) -DBUILD_TESTING=ON > build/colcon.log 2>&1 \
	  || { cat build/colcon.log; exit 1; }

# Both dynamic-network families trained on Fashion-MNIST (the demo's model). The results are
# committed under models/, so a fresh clone's demo and tests train nothing. `make models`
# reproduces them (docs/dynamic-dnns.md gives its time on a busy 2-core machine; every finished
# stage is kept in build/stages/, so a rerun resumes), then profiles them on this CPU into
# config/profiles/.
FASHION_GROUPCONV := models/groupconv_fashion/checkpoint.pt
# jobs of both trainers in one 1-thread worker process per core (dyndnn_ros/training/make_models.py)
TRAIN_MODELS := python -m dyndnn_ros.training.make_models
PROFILE := python -m dyndnn_ros.profiling.profile --threads 1 --out config/profiles
# OpenMP threads that sleep while they wait: spinning ones trained 13x slower than one
# thread on a busy 2-core machine (default_threads in train_groupconv.py)
TRAIN_NICE := OMP_WAIT_POLICY=PASSIVE nice -n 10

$(FASHION_GROUPCONV): | build
	@echo "==> training the group-convolution Fashion-MNIST model (first run only)"
	$(WITH_ROS) $(TRAIN_NICE) $(TRAIN_MODELS) --families groupconv

models: build
	$(WITH_ROS) $(TRAIN_NICE) $(TRAIN_MODELS)
	$(WITH_ROS) $(PROFILE) --model groupconv_fashion --iterations 300
	$(WITH_ROS) $(PROFILE) --model ofa_fashion --iterations 200

# The demo's camera serves Fashion-MNIST test images: installed, cached, or fetched into the cache
# with apt-get download (apt's package lists are refreshed first where they lack it and we may).
LOCATE_FASHION := python -c "from dyndnn_ros.datasets import fashion_mnist as f; print(f.locate())"
dataset: build
	@$(WITH_ROS) $(LOCATE_FASHION) 2>/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq; \
	  $(WITH_ROS) $(LOCATE_FASHION); }

demo: build dataset $(FASHION_GROUPCONV)
	$(WITH_ROS) dyndnn demo

test: build dataset
	$(WITH_ROS) pytest

# The package's tests as a ROS install runs them (ctest: unit tests and the launch_testing test).
colcon-test: build
	$(WITH_ROS) colcon --log-base log test --paths . --build-base build/colcon --install-base install \
	  --packages-select dyndnn_ros --event-handlers console_direct- && \
	  colcon test-result --test-result-base build/colcon --verbose

bench: build
	$(WITH_ROS) python -m dyndnn_ros.benchmarks.run_all

# Soak and load of the whole system (10 minutes by default; SOAK_ARGS="--duration-s 120" for less).
# Run from build/, so Python imports the installed package (it has the generated messages).
soak: build
	$(WITH_ROS) cd build && python -m dyndnn_ros.benchmarks.soak --out bench/soak.json $(SOAK_ARGS)

lock:
	python3 -m venv /tmp/dyndnn-lock && /tmp/dyndnn-lock/bin/pip install -q -r requirements-top.txt && \
	  /tmp/dyndnn-lock/bin/pip freeze | python3 tools/make_lock.py requirements.txt && rm -rf /tmp/dyndnn-lock

clean:
	rm -rf build install log
