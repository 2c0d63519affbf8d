# Both targets install what they need into .venv/ first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test bench clean

$(BIN)/podflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/podflow
	$(BIN)/podflow demo

test: $(BIN)/podflow
	$(BIN)/python -m pytest

bench: $(BIN)/podflow
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/prefect_tags.py

clean:
	rm -rf $(VENV) podflow-demo
