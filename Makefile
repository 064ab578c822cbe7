# The two commands a fresh machine needs (README): `make serve` and `make test`.
PYTHON ?= python3
SANDCELL := $(PYTHON) -m sandcell_gateway.cli
STAMP := .cache/install.stamp

.PHONY: install images gateway-image serve test unit typecheck bench mutate

install: $(STAMP)

# Both distributions, editable: the SDK (sdk/pyproject.toml) and the gateway with the dev
# extra (pyproject.toml), in one pip run so the gateway's `sandcell` requirement is this SDK.
$(STAMP): pyproject.toml sdk/pyproject.toml scripts/install-system-deps $(wildcard kernel_gateway/*/__init__.py sdk/*/__init__.py)
	scripts/install-system-deps
	$(PYTHON) -m pip install --quiet -e ./sdk -e '.[dev]'
	@mkdir -p $(dir $@) && touch $@

images: install
	$(SANDCELL) images build

# The gateway in a container (docs/operations.md); not a default image, `make test` builds it
# (tests/integration/test_gateway_image.py) when it is missing or stale.
gateway-image: install
	$(SANDCELL) images build gateway

serve: install
	$(SANDCELL) serve

typecheck: install
	$(PYTHON) -m mypy

# The fast loop: no Docker, no images (under a minute).
unit: typecheck
	$(PYTHON) -m pytest -m "not docker" tests

test: images typecheck
	$(PYTHON) -m coverage run -m pytest
	$(PYTHON) -m coverage combine -q
	$(PYTHON) -m coverage report

bench: images
	$(PYTHON) -m pip install --quiet -e ./sdk -e '.[bench]'
	$(PYTHON) -m bench $(BENCH_ARGS)

# Mutation check of the security-critical modules against their own unit tests (no Docker, ~10
# minutes, one worker): a habit before resolving security work, never part of `make test`
# or CI. mutmut_config.py says which module meets which tests; results stay in .mutmut-cache.
mutate: install
	nice -n 10 $(PYTHON) -m mutmut run --no-progress --simple-output; status=$$?; \
		$(PYTHON) -m mutmut results; exit $$status
