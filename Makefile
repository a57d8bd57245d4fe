# switchyard — two commands: `make run` and `make test`. Both install missing Debian packages
# first (apt; needs root or sudo), so a fresh Debian 12 machine needs nothing else.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CONFIG ?= ./routes.yaml
CMAKE_FLAGS ?=

.PHONY: all deps configure build run test unit e2e bench clean format

all: build

deps:
	@./scripts/bootstrap-deps.sh

$(BUILD_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

configure: deps $(BUILD_DIR)/CMakeCache.txt

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target switchyard
	@echo "built $(BUILD_DIR)/switchyard"

run: build
	mkdir -p var
	$(BUILD_DIR)/switchyard run -c $(CONFIG)

test: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 600 -j 2

unit: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target switchyard_unit_tests
	cd $(BUILD_DIR) && ctest --output-on-failure -L unit

e2e: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target switchyard switchyard_e2e_tests
	cd $(BUILD_DIR) && ctest --output-on-failure -L e2e

bench: build
	./bench/run

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR)
