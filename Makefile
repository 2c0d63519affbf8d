# Every target installs what it needs into .venv/ first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Where `make bench` draws the Gantt chart: bench/out/ is ignored by git. To update the picture the docs show:
# `make bench CHART=docs/images/pipeline-gantt.png`.
CHART ?= bench/out/pipeline-gantt.png

.PHONY: demo test check lint docs bench clean

$(BIN)/podflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,cluster,whisper]'
	# Without its requirements, which pull triton (1 GB, GPU only); the whisper extra holds the ones it needs on a CPU.
	$(BIN)/pip install --quiet --no-deps openai-whisper==20250625
	touch $@

demo: $(BIN)/podflow
	$(BIN)/podflow demo

# The whole suite, after lint and types: what CI runs. Two processes, each taking whole modules (their fixtures,
# such as test_cluster.py's Dask cluster, start once): many tests wait on servers and subprocesses, so two
# overlap well on 2 cores.
# The docs are built, not regenerated: tests/test_settings_reference.py fails where the committed page is stale.
test: lint
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The fast lane: lint, types and every test not marked integration (no Prefect server, subprocess or Whisper).
check: lint
	$(BIN)/python -m pytest -m "not integration"

# The user docs (docs/, mkdocs.yml) as a site in site/, ignored by git, the settings reference regenerated from
# the Settings model first; --strict fails on a broken link or anchor.
# NO_MKDOCS_2_WARNING: Material prints its end-of-life notice (May 2027) on every build otherwise.
docs: $(BIN)/podflow
	$(BIN)/python -m flows.settings_reference docs/reference/settings.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: $(BIN)/podflow
	$(BIN)/ruff check flows tasks tests bench
	$(BIN)/ruff format --check flows tasks tests bench
	$(BIN)/mypy

# bench/long.py: the default engine on 10 and 60 minutes, the others on 10 (180 minutes on demand: --minutes 180).
bench: $(BIN)/podflow
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/pipeline.py --chart $(CHART) --cluster
	$(BIN)/python bench/task_parameters.py
	$(BIN)/python bench/cluster_transport.py
	# Real Whisper on the cluster: on 2 cores the workers share them; on a GPU machine add
	# --transcriber whisper --model … --device cuda --workers 1 2 4 --episodes 8 --minutes 10.
	$(BIN)/python bench/cluster_whisper.py --workers 1 2 --episodes 2 --minutes 2
	$(BIN)/python bench/prefect_tags.py --rounds 2
	$(BIN)/python bench/transcribe.py --rounds 1
	$(BIN)/python bench/long.py --minutes 10 60 --rows faster-whisper
	$(BIN)/python bench/long.py --minutes 10 --rows faster-whisper-unbatched whisper openai

clean:
	rm -rf $(VENV) podflow-demo site
