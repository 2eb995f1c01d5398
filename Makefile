# herald: build, test, demo, install.
# `make check` and `make demo` first run `deps`, which installs the Debian
# packages that are missing (as root) or prints the apt-get line (otherwise).

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS    := libcurl libetpan libcmark-gfm libconfig gnutls opendkim jansson gdk-pixbuf-2.0 glib-2.0 libmagic libmicrohttpd
# libetpan's .pc carries a Debian `-specs=` link flag meant for its own
# build; it breaks sanitizer and clang links, so it is filtered out.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(filter-out -specs=%,$(shell pkg-config --libs $(PKGS) 2>/dev/null)) -lcsv -lunistring -pthread
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-unused-parameter
# Hardening, on by default: herald holds passwords and reads hostile input
# (CSV, mail, DSNs). The sanitizer and fuzz builds leave FORTIFY out (ASan
# checks the same calls, better).
HARDEN    := -fstack-protector-strong -fPIE -D_FORTIFY_SOURCE=2
HARDEN_LD := -pie -Wl,-z,relro,-z,now
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -Isrc $(WARN) $(CFLAGS) $(PKG_CFLAGS)
VERSION := 0.1.0

# src/LAYER/NAME.c (docs/ARCHITECTURE.md: which layer may call which).
# Every one but cli/main.c is a module the unit tests link against.
SRCS := $(filter-out cli/main.c,$(patsubst src/%,%,$(wildcard src/*/*.c)))
HDRS := $(wildcard src/*/*.h)
UNITS := $(patsubst tests/unit/test_%.c,%,$(wildcard tests/unit/test_*.c))
# Every tests/integration*.py is a suite: TAP on stdout, HERALD in the env.
SUITES := $(patsubst tests/%.py,%,$(wildcard tests/integration*.py))

# Debian packages, one per line: deps/build.txt builds herald, every
# deps/test-*.txt adds what a group of tests needs, deps/demo.txt the demo.
DEPS_BUILD := $(shell cat deps/build.txt)
DEPS_TEST  := $(shell cat deps/test-*.txt)
DEPS_DEMO  := $(shell cat deps/demo.txt)

.PHONY: all check check-quick check-unit check-integration check-fuzz check-valgrind fuzz demo deps \
        deps-test deps-demo deps-bench install uninstall clean bench
all: build/herald

# Objects are not intermediates to delete: the three builds reuse them.
.SECONDARY:

# ---- build -----------------------------------------------------------------
build/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(ALL_CFLAGS) $(HARDEN) -DHERALD_VERSION='"$(VERSION)"' -c $< -o $@
build-san/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(ALL_CFLAGS) $(SANFLAGS) -DHERALD_VERSION='"$(VERSION)"' -c $< -o $@
build build-san:
	mkdir -p $@

# `herald init` writes these files; input/skel.c assembles them in (.incbin).
SKEL_FILES := config.example $(wildcard skel/*.md skel/*.csv)
build/input/skel.o build-san/input/skel.o build-fuzz/input/skel.o: $(SKEL_FILES)
# The data directory: where herald finds its templates when `templates` is
# unset and the config has no templates/ beside it (input/config_paths.c). A
# build in this tree uses the tree's own; `make install` compiles config_paths.c
# again for PREFIX's (see install).
build/input/config_paths.o build-san/input/config_paths.o: ALL_CFLAGS += -DHERALD_DATADIR='"$(CURDIR)"'

SANFLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

build/herald: $(SRCS:%.c=build/%.o) build/cli/main.o
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(HARDEN_LD) $^ $(PKG_LIBS) -o $@
build-san/herald: $(SRCS:%.c=build-san/%.o) build-san/cli/main.o
	@echo "  LD      $@"
	@$(CC) $(SANFLAGS) $^ $(PKG_LIBS) -o $@

# tests/unit/*.h: what unit tests share (decode.h, tmpdir.h), rebuilt when one changes.
UNIT_HDRS := $(wildcard tests/unit/*.h)
build/test_%: tests/unit/test_%.c $(SRCS:%.c=build/%.o) $(UNIT_HDRS)
	@echo "  CCLD    $@"
	@$(CC) $(ALL_CFLAGS) $(HARDEN) $(HARDEN_LD) -Isrc $(filter-out %.h,$^) $(PKG_LIBS) -lcmocka -o $@
build-san/test_%: tests/unit/test_%.c $(SRCS:%.c=build-san/%.o) $(UNIT_HDRS)
	@echo "  CCLD    $@"
	@$(CC) $(ALL_CFLAGS) $(SANFLAGS) -Isrc $(filter-out %.h,$^) $(PKG_LIBS) -lcmocka -o $@

# ---- fuzzing ---------------------------------------------------------------
# tests/fuzz/fuzz_NAME.c defines LLVMFuzzerTestOneInput; its seed corpus is
# tests/corpus/NAME/. `make check` runs each for FUZZ_SECONDS, `make fuzz`
# for FUZZ_LONG seconds. Built with clang's libFuzzer + ASan + UBSan.
FUZZERS      := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 10
FUZZ_LONG    ?= 600
FUZZFLAGS    := -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE $(PKG_CFLAGS) -Isrc
build-fuzz:
	mkdir -p $@
build-fuzz/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	@echo "  CLANG   $@"
	@clang $(FUZZ_CFLAGS) $(FUZZFLAGS) -c $< -o $@
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(SRCS:%.c=build-fuzz/%.o)
	@echo "  CLANGLD $@"
	@clang $(FUZZ_CFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined $^ $(PKG_LIBS) -o $@

fuzz: $(FUZZERS:%=build-fuzz/fuzz_%)
	@$(MAKE) --no-print-directory check-fuzz FUZZ_SECONDS=$(FUZZ_LONG)

# ---- tests -----------------------------------------------------------------
# One target per suite (tests/run-suite runs it into DIR/tap/NAME.tap), so
# `make check` runs them JOBS at a time; tests/summary then prints the one
# line over all of them and fails if anything failed. The slowest suites
# come first so the last minutes are not spent on one long suite alone.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SLOW := integration_delivery integration_failures integration_faults integration_bounces
INTEG_ORDER := $(filter $(SLOW),$(SUITES)) $(filter-out $(SLOW),$(SUITES))
TAPS_SAN   := $(INTEG_ORDER:%=build-san/tap/%.tap) $(UNITS:%=build-san/tap/unit-%.tap)
TAPS_PLAIN := $(INTEG_ORDER:%=build/tap/%.tap) $(UNITS:%=build/tap/unit-%.tap) build/tap/source.tap
TAPS_VG    := build-vg/tap/integration.tap
TAPS_FUZZ  := $(FUZZERS:%=build-fuzz/tap/fuzz-%.tap)
TAP_DIRS   := build/tap build-san/tap build-vg/tap build-fuzz/tap

check: deps-test
	@rm -rf $(TAP_DIRS)
	@$(MAKE) --no-print-directory -j$(JOBS) check-taps
	@tests/summary $(TAP_DIRS)
check-taps: $(TAPS_VG) $(TAPS_SAN) $(TAPS_PLAIN) $(TAPS_FUZZ)

# The inner loop: the plain build's unit tests, integration suites and the
# source check, JOBS at a time; no sanitizers, valgrind or fuzzing.
check-quick:
	@rm -rf build/tap
	@$(MAKE) --no-print-directory -j$(JOBS) check-quick-taps
	@tests/summary build/tap
check-quick-taps: $(TAPS_PLAIN)

B ?= build
check-unit: $(UNITS:%=$(B)/tap/unit-%.tap)
check-integration: $(SUITES:%=$(B)/tap/%.tap)
check-valgrind: $(TAPS_VG)
check-fuzz: $(TAPS_FUZZ)

.PHONY: FORCE
FORCE:
build/tap/unit-%.tap: build/test_% FORCE
	@tests/run-suite unit build $*
build-san/tap/unit-%.tap: build-san/test_% FORCE
	@tests/run-suite unit build-san $*
build/tap/%.tap: tests/%.py build/herald FORCE
	@tests/run-suite integration build $*
build-san/tap/%.tap: tests/%.py build-san/herald FORCE
	@tests/run-suite integration build-san $*
# tests/integration.py once more with every herald run under valgrind's
# memcheck (tests/valgrind-herald): a memory error or a definite leak makes
# that run exit 1, so its test fails, and tests/valgrind-tap adds one TAP
# line over all the reports.
build-vg/tap/integration.tap: build/herald FORCE
	@tests/run-suite valgrind build-vg integration
# The layers only call downwards; no function over 120 lines.
build/tap/source.tap: tests/source.py FORCE
	@tests/run-suite source build source
build-fuzz/tap/fuzz-%.tap: build-fuzz/fuzz_% FORCE
	@tests/run-suite fuzz build-fuzz $*

# ---- demo ------------------------------------------------------------------
# Sub-makes: pkg-config flags are read after deps has installed packages.
demo: deps-demo
	@$(MAKE) --no-print-directory build/herald
	@tests/demo.sh

# ---- benchmarks ------------------------------------------------------------
# Not part of check: they need Postfix's smtp-sink and smtp-source (the
# postfix package; where its postinst starts a local Postfix, stop it if
# you do not want one), and root for the latency part (network
# namespaces; skipped otherwise). BENCH_ARGS, e.g. --quick, --latency,
# --baseline /tmp/old-herald: see bench/run.py and BENCHMARKS.md.
build/bench-ceiling: bench/ceiling.c | build
	@echo "  CCLD    $@"
	@$(CC) -O2 -Wall -Wextra $< $(shell pkg-config --cflags --libs libcurl) -pthread -o $@
build/bench-delayline: bench/delayline.c | build
	@echo "  CCLD    $@"
	@$(CC) -O2 -Wall -Wextra $< -o $@
bench: deps-bench
	@$(MAKE) --no-print-directory build/herald build/bench-ceiling build/bench-delayline
	@/usr/bin/python3 bench/run.py $(BENCH_ARGS)
deps-bench:
	@tests/deps.sh $(DEPS_BUILD) $(shell cat deps/bench.txt)

# ---- dependencies ----------------------------------------------------------
deps:
	@tests/deps.sh $(DEPS_BUILD)
deps-test:
	@tests/deps.sh $(DEPS_BUILD) $(DEPS_TEST)
deps-demo:
	@tests/deps.sh $(DEPS_BUILD) $(DEPS_DEMO)

# ---- install ---------------------------------------------------------------
# The installed binary finds its templates in PREFIX/share/herald, so it
# is linked anew: the objects of INSTALL_FROM (build, or build-san for an
# ASan+UBSan install) with config_paths.c compiled for that directory, in
# INSTALL_BUILD. build/herald itself is never touched, and installs to two
# prefixes can run at once with two INSTALL_BUILD directories (the install
# test does).
INSTALL_FROM  ?= build
# The guides (docs/*.md, with the pictures they show) go beside README.md,
# flat, as ARCHITECTURE.md always has: they link each other and their
# pictures by bare name, so those links hold there too.
DOC_FILES := $(wildcard docs/*.md docs/*.png)
INSTALL_BUILD ?= build/install
INSTALL_DATADIR := $(PREFIX)/share/herald
INSTALL_SAN := $(filter build-san,$(INSTALL_FROM))
INSTALL_OBJS := $(filter-out $(INSTALL_FROM)/input/config_paths.o,$(SRCS:%.c=$(INSTALL_FROM)/%.o)) \
	$(INSTALL_FROM)/cli/main.o
install: $(INSTALL_FROM)/herald
	@mkdir -p $(INSTALL_BUILD)
	@echo "  CC      $(INSTALL_BUILD)/config_paths.o (templates in $(INSTALL_DATADIR)/templates)"
	@$(CC) $(ALL_CFLAGS) $(if $(INSTALL_SAN),$(SANFLAGS),$(HARDEN)) -DHERALD_VERSION='"$(VERSION)"' \
	  -DHERALD_DATADIR='"$(INSTALL_DATADIR)"' -c src/input/config_paths.c -o $(INSTALL_BUILD)/config_paths.o
	@echo "  LD      $(INSTALL_BUILD)/herald"
	@$(CC) $(if $(INSTALL_SAN),$(SANFLAGS),$(CFLAGS) $(HARDEN_LD)) $(INSTALL_OBJS) \
	  $(INSTALL_BUILD)/config_paths.o $(PKG_LIBS) -o $(INSTALL_BUILD)/herald
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 \
	  $(DESTDIR)$(PREFIX)/share/herald/templates $(DESTDIR)$(PREFIX)/share/doc/herald
	install -m 755 $(INSTALL_BUILD)/herald $(DESTDIR)$(PREFIX)/bin/herald
	install -m 644 man/herald.1 $(DESTDIR)$(PREFIX)/share/man/man1/herald.1
	install -m 644 man/herald.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/herald.conf.5
	install -m 644 templates/* $(DESTDIR)$(PREFIX)/share/herald/templates/
	install -m 644 config.example README.md $(DOC_FILES) $(DESTDIR)$(PREFIX)/share/doc/herald/
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/herald $(DESTDIR)$(PREFIX)/share/man/man1/herald.1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5/herald.conf.5
	rm -rf $(DESTDIR)$(PREFIX)/share/herald $(DESTDIR)$(PREFIX)/share/doc/herald

clean:
	rm -rf build build-san build-fuzz build-vg demo-out
