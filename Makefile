# Both targets install what they need into .venv/ first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Where `make bench` draws the Gantt chart: bench/out/ is ignored by git. To update the picture the README shows:
# `make bench CHART=bench/pipeline-gantt.png`.
CHART ?= bench/out/pipeline-gantt.png

.PHONY: demo test bench clean

$(BIN)/podflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# First, so nothing pulls a multi-GB CUDA build: this release's CPU wheel.
	$(BIN)/pip install --quiet torch==2.13.0
	# Without its requirements, which pull triton (1 GB, GPU only); pyproject.toml lists the ones it needs.
	$(BIN)/pip install --quiet --no-deps openai-whisper==20250625
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/podflow
	$(BIN)/podflow demo

test: $(BIN)/podflow
	$(BIN)/python -m pytest

bench: $(BIN)/podflow
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/pipeline.py --chart $(CHART)
	$(BIN)/python bench/prefect_tags.py --rounds 2
	$(BIN)/python bench/transcribe.py --rounds 1

clean:
	rm -rf $(VENV) podflow-demo
