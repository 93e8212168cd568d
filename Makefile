# Two commands for a new user (see README):  make demo   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK_ENV := set -a; . ./.devstack/env; set +a

.PHONY: demo test install stack down status lint unit clean faults soak

$(BIN)/.installed: requirements.txt requirements-dev.txt setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e .
	touch $@

install: $(BIN)/.installed

stack: install
	$(BIN)/acme-customer devstack up
	$(STACK_ENV); $(BIN)/acme-customer topics ensure

## the main job end to end: stack, worker, demo events, resulting profiles and events
demo: stack
	$(STACK_ENV); $(BIN)/acme-customer demo

## the whole test suite against the real local stack, with lint, types and coverage,
## then the slower fault-injection suite (kills, outages, retries; ~10 minutes)
test: stack lint unit
	$(STACK_ENV); $(BIN)/acme-customer schemas check
	$(STACK_ENV); $(BIN)/pytest -m "not faults and not soak" --durations=15 --cov=acme_customer --cov-report=term --cov-fail-under=90
	$(STACK_ENV); $(BIN)/pytest -m faults tests/faults --durations=16

lint: install
	$(BIN)/ruff check acme_customer tests benchmarks
	$(BIN)/ruff format --check acme_customer tests benchmarks
	$(BIN)/mypy

## the unit tests alone (no stack), with branch coverage of the pure and the stream-handling code:
## domain/, service_layer/ and stream/ must be covered > 90 % by unit tests without any server
unit: install
	$(BIN)/pytest tests/unit -q --cov=acme_customer.domain --cov=acme_customer.service_layer \
		--cov=acme_customer.stream --cov-branch --cov-report=term --cov-fail-under=90

down:
	$(BIN)/acme-customer devstack down

status:
	$(BIN)/acme-customer devstack status

clean: down
	rm -rf .devstack $(VENV) customer-service-data

## only the fault-injection suite, with its per-test reports in test-results/ (not tracked)
faults: stack
	$(STACK_ENV); $(BIN)/pytest -m faults tests/faults -s

## manual soak: 100,000 deliveries with 20 random kills (~10 minutes; not part of make test)
soak: stack
	$(STACK_ENV); $(BIN)/pytest -m soak tests/faults -s
