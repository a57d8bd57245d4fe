# switchyard — two commands: `make run` and `make test`. Both install missing Debian packages
# first (apt; needs root or sudo), so a fresh Debian 12 machine needs nothing else.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CONFIG ?= ./routes.yaml
CMAKE_FLAGS ?=

.PHONY: all deps configure build run test unit e2e sanitize tsan fuzz bench clean format

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
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 600 -j 2 --repeat until-pass:2

unit: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target switchyard_unit_tests
	cd $(BUILD_DIR) && ctest --output-on-failure -L unit

e2e: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target switchyard switchyard_e2e_tests
	cd $(BUILD_DIR) && ctest --output-on-failure -L e2e

# The unit and end-to-end suites under AddressSanitizer + UndefinedBehaviorSanitizer (the daemon
# the e2e tests start is the sanitized build too). A test that fails is run once more: tests run
# ~3x slower under ASan; a sanitizer report fails the run either way.
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1
sanitize: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSWITCHYARD_BUILD_BENCH=OFF "-DCMAKE_CXX_FLAGS=$(SANITIZE_FLAGS)"
	cmake --build build-asan -j $(JOBS)
	cd build-asan && UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure --timeout 900 -j 2 --repeat until-pass:2
	@! grep -nE "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" build-asan/Testing/Temporary/LastTest.log \
	  || (echo "sanitize: a sanitizer report (above) fails the run even if a retry passed"; exit 1)

# The concurrency-heavy suites under ThreadSanitizer: dispatcher, storage, file sink, HTTP client
# and its resolver, the logger,
# sink and token-refresher unit tests, and the crash and Sentry-lifecycle end-to-end tests (the
# daemon they start is the TSan build). A test that fails is run once more (TSan slows timing
# down ~5-10x); a report fails the run either way.
# Debian's librocksdb is not instrumented: tests/tsan.supp suppresses reports inside it, which it
# finds by the module name librocksdb.so, so this build links the shared library. Any other
# report fails the run (halt_on_error; the daemon's reports are in the failing test's daemon log).
TSAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer -O1 -Wno-tsan
TSAN_TESTS ?= ^(DispatcherTest|BackoffDelayTest|StoreTest|StorageBoundsTest|SyncFailureTest|FileSinkTest|HttpClientTest|HttpClientTlsTest|HttpSinkTest|RefresherTest|SentryIntegrationTest|HostResolverTest|LogTest)[.]|CrashTest|LogPipeTest[.]
tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSWITCHYARD_BUILD_BENCH=OFF -DSWITCHYARD_STATIC_ROCKSDB=OFF "-DCMAKE_CXX_FLAGS=$(TSAN_FLAGS)"
	cmake --build build-tsan -j $(JOBS) --target switchyard switchyard_unit_tests switchyard_e2e_tests
	cd build-tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
	  ctest --output-on-failure --timeout 900 -j 2 -R '$(TSAN_TESTS)' --repeat until-pass:2
	@! grep -n "WARNING: ThreadSanitizer" build-tsan/Testing/Temporary/LastTest.log \
	  || (echo "tsan: a ThreadSanitizer report (above) fails the run even if a retry passed"; exit 1)

# libFuzzer targets (fuzz/): clang + ASan + UBSan in build-fuzz; each target runs FUZZ_SECONDS on
# a fresh seed corpus and any crash, leak, timeout or invariant violation fails the run (crash
# inputs stay in build-fuzz/fuzz-artifacts/).
FUZZ_SECONDS ?= 60
fuzz:
	@SWITCHYARD_FUZZ_DEPS=1 ./scripts/bootstrap-deps.sh
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_FUZZ=ON \
	  -DSWITCHYARD_BUILD_TESTS=OFF -DSWITCHYARD_BUILD_BENCH=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets
	./fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

bench: build
	./bench/run

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR)
