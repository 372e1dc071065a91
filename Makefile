# The two commands a newcomer needs:  make demo  |  make test
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: test demo bench bootstrap ovs unit lint

bootstrap:
	@scripts/bootstrap.sh

ovs: bootstrap
	@scripts/ovs-up.sh

## Run every test: unit, property, integration (real OVS, SIPp, ryu-manager), end to end (Mininet),
## then the os-ken smoke run. Installs what is missing first.
test: ovs
	@echo "== mypy --strict ryu_apps (settings in setup.cfg)"
	.venv/bin/python -m mypy ryu_apps
	@echo "== tests under ryu (.venv)"
	MAM_FRAMEWORK=ryu .venv/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests
	@echo "== tests under os-ken (.venv-osken)"
	MAM_FRAMEWORK=os_ken .venv-osken/bin/python -m pytest -q -p no:cacheprovider -m osken $(PYTEST_ARGS) tests

## Only the fast tests that need no root, OVS or SIPp.
unit: bootstrap
	.venv/bin/python -m mypy ryu_apps
	.venv/bin/python -m pytest -q -p no:cacheprovider -m "not integration and not e2e" tests

## The demo: two sites, a reserved aggregate, SIPp calls, a best-effort flood, a report and a plot in out/.
demo: ovs
	timeout 600 $(PY) mininet/demo.py

## Every benchmark, printing figures.
bench: ovs
	$(PY) benchmarks/run_all.py
