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
WITH_ROS := source $(VENV)/bin/activate && source install/setup.bash &&

.PHONY: demo test bench build venv venv-path lock clean models

venv: $(VENV_STAMP)

venv-path:
	@echo $(VENV)

$(VENV_STAMP):
	@echo "==> creating the pinned virtual environment $(VENV) (first run only, about 2 minutes)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) tools/fix_ros_wheel_cmake_paths.py
	touch $@

build: $(VENV_STAMP)
	@echo "==> colcon build (interfaces + Python package + node executables) into install/"
	mkdir -p build && source $(VENV)/bin/activate && \
	  CMAKE_PREFIX_PATH=$$VIRTUAL_ENV AMENT_PREFIX_PATH=$$VIRTUAL_ENV \
	  colcon --log-base log build --paths . --build-base build/colcon --install-base install \
	    --cmake-args -DPython3_EXECUTABLE=$(abspath $(PY)) -DBUILD_TESTING=OFF > build/colcon.log 2>&1 \
	  || { cat build/colcon.log; exit 1; }

# Both dynamic-network families trained on Fashion-MNIST (the demo's model). The results are
# committed under models/, so a fresh clone's demo and tests train nothing. `make models`
# reproduces them (about an hour on a busy 2-core machine; every finished stage is kept in
# build/stages/, so a rerun resumes), then profiles them on this CPU into config/profiles/.
FASHION_GROUPCONV := models/groupconv_fashion/checkpoint.pt
TRAIN_GROUPCONV := python -m dyndnn_ros.models.train_groupconv --dataset fashion-mnist --no-dense \
	--out $(dir $(FASHION_GROUPCONV)) --stages build/stages/groupconv_fashion
PROFILE := python -m dyndnn_ros.profiling.profile --threads 1 --out config/profiles

$(FASHION_GROUPCONV): | build
	@echo "==> training the group-convolution Fashion-MNIST model (first run only)"
	$(WITH_ROS) nice -n 10 $(TRAIN_GROUPCONV)

models: build
	$(WITH_ROS) nice -n 10 $(TRAIN_GROUPCONV)
	$(WITH_ROS) nice -n 10 python -m dyndnn_ros.models.train_ofa --out models/ofa_fashion \
	  --stages build/stages/ofa_fashion
	$(WITH_ROS) $(PROFILE) --model groupconv_fashion --iterations 300
	$(WITH_ROS) $(PROFILE) --model ofa_fashion --iterations 200

demo: build $(FASHION_GROUPCONV)
	$(WITH_ROS) dyndnn demo

test: build
	$(WITH_ROS) pytest

bench: build
	$(WITH_ROS) python -m dyndnn_ros.benchmarks.run_all

lock:
	python3 -m venv /tmp/dyndnn-lock && /tmp/dyndnn-lock/bin/pip install -q -r requirements-top.txt && \
	  /tmp/dyndnn-lock/bin/pip freeze | python3 tools/make_lock.py requirements.txt && rm -rf /tmp/dyndnn-lock

clean:
	rm -rf build install log
