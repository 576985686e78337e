# The README's two commands: `make demo` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup chromium demo demo-distributed serve test test-golden soak-delivery soak-replicas lint screenshots bench bench-http bench-replicas bench-console bench-tools fuzz-api clean

$(BIN)/gateway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# OPA's own Go Rego evaluator (v1.20.2) as a library, for the engine-parity tests. The wheel says it
	# needs Python 3.14 but works on 3.11; pyproject cannot express that override, so it is installed here.
	$(BIN)/pip install --quiet --no-deps --ignore-requires-python opa-golib-python-bindings==0.4.4
	touch $(BIN)/gateway

setup: $(BIN)/gateway chromium

# Debian's Chromium for tests/browser (Playwright drives it by its path; `playwright install`, which
# downloads a browser build of its own, is never used). Installed once, when it is not on the PATH.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

demo: setup
	$(BIN)/gateway demo

# The five agency systems as separate sim-agency processes, signed deliveries checked in their stores.
demo-distributed: setup
	$(BIN)/gateway demo --distributed

serve: setup
	$(BIN)/gateway serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two processes, a file each at a time (tests in one file share their gateway): the suite's own
# servers, subprocesses and fuzz runs then keep both cores busy, which also shows no test needs an idle
# machine.
test: lint
	$(BIN)/gateway policy test
	$(BIN)/pytest -n 2 --dist loadfile

# The console's pages in docs/console/*.png, taken in Chromium by the browser tests (look at them).
screenshots: setup
	VEILIG_DELEN_SCREENSHOTS=1 $(BIN)/pytest -q -p no:cacheprovider tests/browser

# The long version of tests/e2e/test_nothing_lost.py: 1000 shares pushed to the five sim-agency
# processes while the gateway is SIGKILLed 5 times, on SQLite and on PostgreSQL; prints the figures
# (shares, kills, push attempts, deliveries received and stored). See docs/operators.md.
soak-delivery: setup
	NOTHING_LOST_SHARES=$${NOTHING_LOST_SHARES:-1000} NOTHING_LOST_KILLS=$${NOTHING_LOST_KILLS:-5} \
	NOTHING_LOST_DATABASES=$${NOTHING_LOST_DATABASES:-sqlite,postgresql} \
	$(BIN)/pytest -q -s -p no:cacheprovider tests/e2e/test_nothing_lost.py

# The long version of tests/e2e/test_replicas.py: three replicas on one PostgreSQL, one SIGKILLed, 5000
# shares by default (REPLICAS_EXCHANGES); prints what the shares came to. See docs/operations.md.
soak-replicas: setup
	REPLICAS_EXCHANGES=$${REPLICAS_EXCHANGES:-5000} $(BIN)/pytest -q -s -p no:cacheprovider tests/e2e/test_replicas.py

# The speed figures of docs/performance.md, each beside its baseline measured in the same run, saved with
# the machine's description in bench/results/. Not tests: run them on a machine with nothing else to do.
# Every golden decision and every input of the decision-table sweep on regopy too (the suite decides a
# fixed spread of them there, all of them on OPA's Go engine).
test-golden: setup
	VEILIG_DELEN_GOLDEN_FULL=1 $(BIN)/pytest -q tests/policy/test_golden.py tests/policy/test_table.py tests/policy/test_opa_parity.py

bench: setup bench-tools
	$(BIN)/python -m bench.policy_decision
	$(BIN)/python -m bench.audit_log
	$(BIN)/python -m bench.share_http
	$(BIN)/python -m bench.share_http --workers 2

bench-http: setup bench-tools
	$(BIN)/python -m bench.share_http

# Three gateway serve replicas on one PostgreSQL beside one, one on SQLite and the bare baseline, taking
# turns under wrk (bench/replicas.py); needs the PostgreSQL server at 127.0.0.1:5432. See docs/performance.md.
bench-replicas: setup bench-tools
	$(BIN)/python -m bench.replicas

# The console's search page at a million entries (bench/console_search.py): the log is built once in
# var/bench/console-1000000/ and reused; SIZE=20000 for a quick run.
bench-console: setup
	$(BIN)/python -m bench.console_search --size $${SIZE:-1000000}

# wrk drives the share bench; py-spy profiles it (--profile). Installed only for the benchmarks.
bench-tools:
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/pip install --quiet -e '.[bench]'

# The schemathesis runs of the suite (tests/e2e/test_api_fuzz.py) at a large size: every check, one real
# token per role, 200 examples per operation. Exit 1 while any run finds something (the output says what).
fuzz-api: setup
	$(BIN)/python -m tests.e2e.api_fuzz --max-examples 200

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
