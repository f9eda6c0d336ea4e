# tokio_php: `make run` serves ./public on http://127.0.0.1:8080; `make test` runs every test.
# Both obtain a thread-safe PHP on first use (scripts/setup-php.sh, cached under
# ~/.cache/tokio_php) unless PHP_CONFIG names one.

SHELL := /bin/bash
PHP_CONFIG_PATH = $(shell scripts/setup-php.sh)
CARGO ?= cargo
LISTEN_ADDR ?= 127.0.0.1:8080

.PHONY: run test test-deps php pecl build release lint fmt bench clean-php

php:
	@scripts/setup-php.sh >/dev/null

run: php
	PHP_CONFIG=$(PHP_CONFIG_PATH) LISTEN_ADDR=$(LISTEN_ADDR) $(CARGO) run --release --bin tokio_php

# PECL extensions against the same PHP: make pecl EXT="redis apcu" (prints the php.ini lines).
pecl: php
	PHP_CONFIG=$(PHP_CONFIG_PATH) scripts/build-pecl.sh $(EXT)

test-deps:
	@scripts/setup-test-deps.sh

test: php test-deps
	PHP_CONFIG=$(PHP_CONFIG_PATH) $(CARGO) test --all-targets
	PHP_CONFIG=$(PHP_CONFIG_PATH) $(CARGO) test --doc

build: php
	PHP_CONFIG=$(PHP_CONFIG_PATH) $(CARGO) build

release: php
	PHP_CONFIG=$(PHP_CONFIG_PATH) $(CARGO) build --release

lint: php
	$(CARGO) fmt --all -- --check
	PHP_CONFIG=$(PHP_CONFIG_PATH) $(CARGO) clippy --all-targets -- -D warnings
	PHP_CONFIG=$(PHP_CONFIG_PATH) RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

fmt:
	$(CARGO) fmt --all

bench: php
	bench/run.sh

clean-php:
	rm -rf "$${TOKIO_PHP_CACHE:-$$HOME/.cache/tokio_php}"
