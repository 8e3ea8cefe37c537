# cvgl_ros: everything is set up from this file. Two commands on a fresh machine:
#   make demo   the whole system on the embedded default data and model
#   make test   the test suite
# Both create .venv (python3.11) and install the pinned requirements first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
REQS := requirements/constraints.txt requirements/runtime.txt requirements/offline.txt requirements/training.txt \
	requirements/dev.txt requirements/tf2_msgs.txt
# tf2_msgs (TFMessage) has no wheel: it is generated from tools/tf2_msgs and built into .venv
# (about 40 s on one core).
TF2_MSGS_SOURCES := tools/build_tf2_msgs.sh tools/tf2_msgs/CMakeLists.txt tools/tf2_msgs/package.xml \
	tools/tf2_msgs/msg/TFMessage.msg
# The stamp is keyed on the requirement files, the package definition and tf2_msgs' sources:
# when none of them changed, `make setup` does nothing.
REQ_HASH := $(shell cat $(REQS) setup.py setup.cfg package.xml $(TF2_MSGS_SOURCES) | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
PYTEST_ARGS ?=

.PHONY: setup test test-core312 bench demo model lock clean

setup: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==26.3
	$(BIN)/pip install --quiet -c requirements/constraints.txt \
		-r requirements/runtime.txt -r requirements/offline.txt -r requirements/training.txt -r requirements/dev.txt \
		-r requirements/tf2_msgs.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	tools/build_tf2_msgs.sh $(VENV)
	@rm -f $(VENV)/.installed-*
	@touch $@

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The ROS-free core (tests marked `core`: imaging, tiles, geo, filter, runtime) on what a stock
# ROS 2 Jazzy/Kilted vehicle runs: Python 3.12 with Ubuntu 24.04's numpy 1.26 and OpenCV 4.6.
# Its own venv, pinned by requirements/constraints312.txt; the package from the source tree.
PYTHON312 ?= python3.12
VENV312 := .venv312
STAMP312 := $(VENV312)/.installed-$(shell cat requirements/core312.txt requirements/constraints312.txt | sha256sum | cut -c1-16)
CORE_TESTS = $(shell grep -l '^pytestmark = pytest.mark.core' test/test_*.py)

$(STAMP312):
	@test -x $(VENV312)/bin/python || PYENV_VERSION=$${PYENV_VERSION:-3.12.1} $(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install --quiet --disable-pip-version-check pip==26.3
	$(VENV312)/bin/pip install --quiet -r requirements/core312.txt
	@rm -f $(VENV312)/.installed-*
	@touch $@

test-core312: $(STAMP312)
	PYTHONPATH=$(CURDIR) $(VENV312)/bin/python -m pytest -p no:cacheprovider -m core $(CORE_TESTS)

bench: setup
	$(BIN)/cvgl bench --out bench/results/latest.json

demo: setup
	$(BIN)/cvgl demo

# The shipped default model (models/cvgl_pose.onnx and its card), from nothing: five
# simulator worlds (four to train on, one held out for cross-area), 8 200 KITTI-protocol
# pairs, 5 epochs on 2 CPU cores (about 1.5 h; the run resumes if interrupted), export with
# parity check, temperature calibration on the val split and same/cross-area evaluation.
MODEL_WORLDS := 11:urban 12:suburban 13:urban 14:rural 15:urban
MODEL_WORLD_DIRS := $(foreach w,$(MODEL_WORLDS),data/worlds/world$(firstword $(subst :, ,$(w))))
MODEL_RUN := runs/pose_sim_v2

data/worlds/world%/world.json: | setup
	$(BIN)/cvgl sim world --seed $* --style $(lastword $(subst :, ,$(filter $*:%,$(MODEL_WORLDS)))) \
		--size-m 1000 --out data/worlds/world$*

data/pose_pairs/index.json: $(addsuffix /world.json,$(MODEL_WORLD_DIRS))
	$(BIN)/cvgl sim pairs --worlds $(MODEL_WORLD_DIRS) --n 8200 --same-area-frac 0.122 \
		--cross-area-frac 0.122 --val-frac 0.0244 --cross-area-worlds 1 --seed 1 --workers 2 --out data/pose_pairs

model: data/pose_pairs/index.json
	test -f $(MODEL_RUN)/finished || { $(BIN)/cvgl train --data data/pose_pairs --config config/train_pose.yaml \
		--out $(MODEL_RUN) $$(test -f $(MODEL_RUN)/last.pt && echo --resume) && touch $(MODEL_RUN)/finished; }
	$(BIN)/cvgl export --ckpt $(MODEL_RUN)/best.pt --out models/cvgl_pose.onnx --eval-data data/pose_pairs \
		--calibrate data/pose_pairs:val

# Re-pin: install the top-level requirements unpinned into a scratch venv, freeze it.
lock:
	rm -rf /tmp/cvgl-lock && $(PYTHON) -m venv /tmp/cvgl-lock
	/tmp/cvgl-lock/bin/pip install --quiet $$(grep -hv '^[#-]' requirements/runtime.txt requirements/offline.txt \
		requirements/training.txt requirements/dev.txt requirements/tf2_msgs.txt | cut -d= -f1)
	/tmp/cvgl-lock/bin/pip freeze > requirements/constraints.txt

clean:
	rm -rf $(VENV) $(VENV312) build install log .pytest_cache
