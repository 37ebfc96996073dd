# Two entry points (see README): `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test unit lint peers bench clean

$(STAMP): pyproject.toml setup.py $(wildcard altmount/_core/*.pyx)
	bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

serve: $(STAMP)
	$(BIN)/altmount serve --config config.example.yaml

peers:
	bash scripts/setup-peers.sh

# The sans-IO packages and the pure twins are kept mypy-clean (STYLE.md).
TYPED := altmount/errors.py altmount/config.py altmount/nntp/protocol.py altmount/nzb \
         altmount/metadata altmount/_core/yenc_py.py altmount/_core/ranges_py.py \
         altmount/_core/types.py altmount/stream/httprange.py altmount/web/paths.py \
         altmount/web/davxml.py altmount/importer altmount/par2 altmount/queue/model.py \
         altmount/nntp/budget.py altmount/postgres altmount/backends.py

lint: $(STAMP)
	$(BIN)/ruff check altmount tests benchmarks
	$(BIN)/mypy --follow-imports=silent $(TYPED)

unit: $(STAMP)
	bash scripts/run-pytest.sh $(BIN)/python tests/unit

test: $(STAMP) peers lint
	bash scripts/run-pytest.sh $(BIN)/python tests

# The standard set (about 2 minutes on 2 cores): JSON and PNG plots in benchmarks/out/.
# Installs the `bench` extra (matplotlib, for the plots) into the venv first.
BENCH_OUT := benchmarks/out
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

bench: $(BENCH_STAMP)
	mkdir -p $(BENCH_OUT)
	$(BIN)/altmount bench decode --out $(BENCH_OUT)/decode.json
	for latency in 0 50; do for pool in thread process; do \
	  $(BIN)/altmount bench stream --size-mb 300 --connections 20 --users 1,5,10 \
	    --latency-ms $$latency --pool $$pool --plot-dir $(BENCH_OUT) \
	    --out $(BENCH_OUT)/stream-$$pool-$${latency}ms.json || exit 1; \
	done; done
	$(BIN)/altmount bench api --out $(BENCH_OUT)/api.json

clean:
	rm -rf $(VENV) build *.egg-info altmount/_core/*.c altmount/_core/*.so
