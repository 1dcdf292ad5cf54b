# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SANDBOX := deploy/fhir-sandbox
NODE_STAMP := $(SANDBOX)/node_modules/.installed
BROWSER_STAMP := tests/browser/node_modules/.installed

.PHONY: test demo simulate lint bench schema lock sbom clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

$(NODE_STAMP): $(SANDBOX)/package.json $(SANDBOX)/package-lock.json
	cd $(SANDBOX) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	sh deploy/browser/install.sh
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	@touch $(BROWSER_STAMP)

test: $(STAMP) $(NODE_STAMP) $(BROWSER_STAMP)
	$(BIN)/pytest -q

demo: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m deploy.demo

simulate: $(STAMP)
	sh deploy/demo/simulate.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy engine fhir_adapters eras_cli flows store api

bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/apply.py
	$(BIN)/python bench/end_to_end.py
	$(BIN)/python bench/intake.py
	$(BIN)/python -m bench.mllp
	$(BIN)/python -m bench.worklist
	$(BIN)/python -m bench.audit
	$(BIN)/python -m bench.cds_hooks

schema: $(STAMP)
	$(BIN)/python -m engine.schema > pathways/schema/pathway.schema.json

# requirements.lock: every Python dependency (dev included) pinned with its hashes, from
# pyproject.toml; install it with `pip install --require-hashes -r requirements.lock`.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --extra dev --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

# CycloneDX SBOMs in sbom/: the Python environment, and each npm package from its lockfile.
sbom: $(STAMP)
	mkdir -p sbom
	$(BIN)/cyclonedx-py environment --pyproject pyproject.toml --mc-type application \
		--output-reproducible --of JSON -o sbom/python.cdx.json $(VENV)
	cd $(SANDBOX) && npm sbom --sbom-format cyclonedx --package-lock-only > $(CURDIR)/sbom/fhir-sandbox.cdx.json
	cd tests/browser && npm sbom --sbom-format cyclonedx --package-lock-only > $(CURDIR)/sbom/browser-tests.cdx.json
	@ls -l sbom

clean:
	rm -rf $(VENV) $(SANDBOX)/node_modules .pytest_cache
