# Passerelle: a thin layer over CMake and the scripts in scripts/ (see scripts/README.md).
#
#   make demo        build and run the local demo (Ctrl-C stops it)
#   make check       sanitizer build + the whole test suite (ARGS="-L unit" goes to ctest)
#   make build       release build in build/release
#   make bench       the benchmark set, one table (bench/run_all.sh; sizes by environment)
#   make format      clang-format the C/C++ sources
#   make clean       remove build/
#   make distclean   clean, stop the demo cluster, remove var/

SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help demo check build bench format clean distclean

BUILD_DIR := build/release
FORMAT_DIRS := gatewayd providers flows admin tests bench

help:
	@echo 'Passerelle, an SMS gateway. Targets:'
	@echo '  make demo        build and run the local demo on http://127.0.0.1:$${PORT:-8080}'
	@echo '                   (PORT=... and PGPORT=... change the ports; Ctrl-C stops it)'
	@echo '  make check       sanitizer build + all tests against a throwaway PostgreSQL'
	@echo '                   (ARGS="-L unit" passes arguments to ctest)'
	@echo '  make build       release build in $(BUILD_DIR)'
	@echo '  make bench       the benchmark set with one table of figures (bench/run_all.sh,'
	@echo '                   3-5 min; BENCH_REV=HEAD measures the last commit, see bench/README.md)'
	@echo '  make format      clang-format -i the C/C++ sources'
	@echo '  make clean       remove build/'
	@echo '  make distclean   clean, stop the demo cluster and remove var/'
	@echo 'First time on a fresh Debian 12: run as root or with sudo (packages get installed).'

demo:
	bash scripts/demo.sh

check:
	bash scripts/check.sh $(ARGS)

build:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release -DPASSERELLE_TESTS=OFF
	cmake --build $(BUILD_DIR) -j2

bench:
	bash bench/run_all.sh

format:
	@command -v clang-format >/dev/null || \
	  { echo 'passerelle: clang-format not found (apt-get install clang-format)' >&2; exit 1; }
	find $(FORMAT_DIRS) -type f \( -name '*.c' -o -name '*.h' -o -name '*.cc' \) -print0 2>/dev/null \
	  | xargs -0 -r clang-format -i

clean:
	rm -rf build

distclean: clean
	bash scripts/demo.sh stop
	rm -rf var
