# Thin wrapper over CMake: `make run` and `make test` are all a new user needs.
# Everything else (install, build, sanitizers) follows from these targets.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the project needs, to build, to run and to test.
PACKAGES := build-essential cmake pkg-config clang libclang-rt-14-dev \
            libluajit-5.1-dev libuv1-dev lua-cjson lua-cjson-dev libmsgpack-dev \
            libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libjansson-dev \
            libssl-dev openssl etcd-server etcd-client curl

.PHONY: all deps build run cluster test test-release test-asan bench clean

all: build

# Installs only what is missing; a second run installs nothing.
deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all packages present"; fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

# The server on loopback with the default scripts and one 4096 x 4096 space, `world`.
# Stop it with Ctrl-C (or: $(BUILD)/sightctl --admin $(BUILD)/sightline.sock shutdown).
run: build
	./$(BUILD)/sightline --scripts scripts/default --listen 127.0.0.1:7100 \
	  --admin $(BUILD)/sightline.sock --space world:4096x4096

# A local cluster to try: a 3-member etcd and 3 nodes on loopback, 6 spaces (README
# "Running a cluster"); Ctrl-C stops it all.
cluster: build
	./core/tools/cluster.sh $(BUILD)

test: test-release test-asan

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE bench

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSL_ASAN=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE bench

bench: build
	./$(BUILD)/sightline-bench --suite
	./$(BUILD)/sightline-loadgen --server $(BUILD)/sightline --seconds 30
	./$(BUILD)/sightline-loadgen --server $(BUILD)/sightline --seconds 10 --saturate
	./$(BUILD)/sightline-bench --workload W5

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
