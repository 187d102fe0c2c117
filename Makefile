# agent-broker: `make run` for the local stack, `make test` for everything CI runs.
VENV := .venv/bin
export CERBOS_NO_TELEMETRY := 1
export PATH := $(CURDIR)/.tools/bin:$(PATH)

# Prerequisites run in the order written (setup first), even under `make -j`.
.NOTPARALLEL:
.PHONY: setup lock lint policies test bench run demo clean k8s-policies

setup:  ## install what is missing: .venv, redis-server, Cerbos
	@bash scripts/setup.sh

lock:  ## re-resolve the dependencies and rewrite constraints.txt (then run make test)
	bash scripts/lock.sh

lint:  ## ruff, mypy --strict, import contracts
	$(VENV)/ruff check .
	$(VENV)/mypy
	$(VENV)/mypy -p bench
	$(VENV)/lint-imports

policies:  ## compile the Cerbos policies and run their test suites
	.tools/bin/cerbos compile policies/

test: setup lint policies  ## what CI runs
	$(VENV)/pytest

bench: setup  ## performance figures (docs/performance.md); writes bench/results.json
	$(VENV)/python -m bench

run: setup  ## the whole local stack in the foreground
	$(VENV)/agent-broker dev

demo:  ## the scripted story against the running stack
	$(VENV)/agent-broker demo

k8s-policies:  ## copy policies/ into deploy/k8s/base/policies (kustomize reads only its own folder)
	bash deploy/k8s/sync-policies.sh

clean:  ## remove run state and caches (keeps .venv and .tools)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
	find . -path ./.venv -prune -o -path ./.tools -prune -o -name __pycache__ -type d -exec rm -rf {} +
