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

.PHONY: setup test test-core312 bench demo model retrieval-model lock clean

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
# Every world a recipe here makes, seed:style:size (the fleet's worlds of
# cvgl_ros/evaluation/fleet.py are the retrieval model's).
WORLD_SPECS := 11:urban:1000 12:suburban:1000 13:urban:1000 14:rural:1000 15:urban:1000 \
	21:urban:1000 22:suburban:1000 24:urban:1000 25:rural:800
world_spec = $(word $(2),$(subst :, ,$(filter $(1):%,$(WORLD_SPECS))))

data/worlds/world%/world.json: | setup
	$(BIN)/cvgl sim world --seed $* --style $(call world_spec,$*,2) --size-m $(call world_spec,$*,3) \
		--out data/worlds/world$*

data/pose_pairs/index.json: $(addsuffix /world.json,$(MODEL_WORLD_DIRS))
	$(BIN)/cvgl sim pairs --worlds $(MODEL_WORLD_DIRS) --n 8200 --same-area-frac 0.122 \
		--cross-area-frac 0.122 --val-frac 0.0244 --cross-area-worlds 1 --seed 1 --workers 2 --out data/pose_pairs

model: data/pose_pairs/index.json
	test -f $(MODEL_RUN)/finished || { $(BIN)/cvgl train --data data/pose_pairs --config config/train_pose.yaml \
		--out $(MODEL_RUN) $$(test -f $(MODEL_RUN)/last.pt && echo --resume) && touch $(MODEL_RUN)/finished; }
	$(BIN)/cvgl export --ckpt $(MODEL_RUN)/best.pt --out models/cvgl_pose.onnx --eval-data data/pose_pairs \
		--calibrate data/pose_pairs:val

# The shipped descriptor models of the coarse stage (models/retrieval/{local,global}, seed 001):
# the five fleet worlds, 20 000 pairs within 5 m of their patch centre, the geo-local model and
# the geo-global baseline trained side by side (one thread each), then Tables I-II of
# docs/retrieval.md (cvgl retrieval evaluate on the held-out drives).
RETRIEVAL_WORLD_DIRS := $(foreach s,12 21 22 25 24,data/worlds/world$(s))
RETRIEVAL_RUNS := runs/retrieval_local runs/retrieval_global

data/retrieval_pairs/index.json: $(addsuffix /world.json,$(RETRIEVAL_WORLD_DIRS))
	$(BIN)/cvgl sim pairs --worlds $(RETRIEVAL_WORLD_DIRS) --n 20000 --max-shift-m 3.5 --same-area-frac 0.05 \
		--val-frac 0.01 --cross-area-frac 0 --cross-area-worlds 0 --seed 119 --workers 2 --out data/retrieval_pairs

retrieval-model: data/retrieval_pairs/index.json
	for run in $(RETRIEVAL_RUNS); do test -f $$run/finished || { $(BIN)/cvgl train-retrieval --quiet \
		--data data/retrieval_pairs --config config/train_retrieval.yaml --out $$run \
		$$(test $$run = runs/retrieval_global && echo --global) $$(test -f $$run/last.pt && echo --resume) & }; \
		done; wait
	for m in local global; do mkdir -p models/retrieval/$$m && cp runs/retrieval_$$m/descriptor.json \
		runs/retrieval_$$m/descriptor_ground.onnx runs/retrieval_$$m/descriptor_satellite.onnx models/retrieval/$$m/; done
	$(BIN)/cvgl retrieval evaluate --data data/retrieval_pairs --model local=models/retrieval/local \
		--model global=models/retrieval/global --out runs/retrieval_eval

# Re-pin: install the top-level requirements unpinned into a scratch venv, freeze it.
lock:
	rm -rf /tmp/cvgl-lock && $(PYTHON) -m venv /tmp/cvgl-lock
	/tmp/cvgl-lock/bin/pip install --quiet $$(grep -hv '^[#-]' requirements/runtime.txt requirements/offline.txt \
		requirements/training.txt requirements/dev.txt requirements/tf2_msgs.txt | cut -d= -f1)
	/tmp/cvgl-lock/bin/pip freeze > requirements/constraints.txt

clean:
	rm -rf $(VENV) $(VENV312) build install log .pytest_cache
