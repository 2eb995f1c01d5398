# herald: build, test, demo, install.
# `make check` and `make demo` first run `deps`, which installs the Debian
# packages that are missing (as root) or prints the apt-get line (otherwise).

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS    := libcurl libetpan libcmark-gfm libconfig gnutls opendkim jansson
# libetpan's .pc carries a Debian `-specs=` link flag meant for its own
# build; it breaks sanitizer and clang links, so it is filtered out.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(filter-out -specs=%,$(shell pkg-config --libs $(PKGS) 2>/dev/null)) -lcsv -pthread
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-unused-parameter
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PKG_CFLAGS)
VERSION := 0.1.0

# Every src/*.c but main.c is a module the unit tests link against.
SRCS := $(filter-out main.c,$(notdir $(wildcard src/*.c)))
UNITS := $(patsubst tests/unit/test_%.c,%,$(wildcard tests/unit/test_*.c))
# Every tests/integration*.py is a suite: TAP on stdout, HERALD in the env.
SUITES := $(patsubst tests/%.py,%,$(wildcard tests/integration*.py))

# Debian packages, one per line: deps/build.txt builds herald, every
# deps/test-*.txt adds what a group of tests needs, deps/demo.txt the demo.
DEPS_BUILD := $(shell cat deps/build.txt)
DEPS_TEST  := $(shell cat deps/test-*.txt)
DEPS_DEMO  := $(shell cat deps/demo.txt)

.PHONY: all check check-unit check-integration check-fuzz check-valgrind fuzz demo deps \
        deps-test deps-demo deps-bench install uninstall clean bench
all: build/herald

# Objects are not intermediates to delete: the three builds reuse them.
.SECONDARY:

# ---- build -----------------------------------------------------------------
build/%.o: src/%.c src/*.h | build
	@echo "  CC      $@"
	@$(CC) $(ALL_CFLAGS) -DHERALD_VERSION='"$(VERSION)"' -c $< -o $@
build-san/%.o: src/%.c src/*.h | build-san
	@echo "  CC      $@"
	@$(CC) $(ALL_CFLAGS) $(SANFLAGS) -DHERALD_VERSION='"$(VERSION)"' -c $< -o $@
build build-san:
	mkdir -p $@

SANFLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

build/herald: $(SRCS:%.c=build/%.o) build/main.o
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $^ $(PKG_LIBS) -o $@
build-san/herald: $(SRCS:%.c=build-san/%.o) build-san/main.o
	@echo "  LD      $@"
	@$(CC) $(SANFLAGS) $^ $(PKG_LIBS) -o $@

build/test_%: tests/unit/test_%.c $(SRCS:%.c=build/%.o)
	@echo "  CCLD    $@"
	@$(CC) $(ALL_CFLAGS) -Isrc $^ $(PKG_LIBS) -lcmocka -o $@
build-san/test_%: tests/unit/test_%.c $(SRCS:%.c=build-san/%.o)
	@echo "  CCLD    $@"
	@$(CC) $(ALL_CFLAGS) $(SANFLAGS) -Isrc $^ $(PKG_LIBS) -lcmocka -o $@

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
build-fuzz/%.o: src/%.c src/*.h | build-fuzz
	@echo "  CLANG   $@"
	@clang $(FUZZ_CFLAGS) $(FUZZFLAGS) -c $< -o $@
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(SRCS:%.c=build-fuzz/%.o)
	@echo "  CLANGLD $@"
	@clang $(FUZZ_CFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined $^ $(PKG_LIBS) -o $@

# One TAP line per fuzzer: ok when it ran its time without a finding.
check-fuzz: $(FUZZERS:%=build-fuzz/fuzz_%)
	@mkdir -p build-fuzz/tap build-fuzz/findings
	@: > build-fuzz/tap/fuzz.tap; n=0; \
	for f in $(FUZZERS); do n=$$((n+1)); \
	  mkdir -p build-fuzz/corpus/$$f; \
	  if build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	       -artifact_prefix=build-fuzz/findings/$$f- build-fuzz/corpus/$$f tests/corpus/$$f \
	       > build-fuzz/tap/fuzz-$$f.log 2>&1; \
	  then echo "ok $$n - fuzz $$f for $(FUZZ_SECONDS) s: $$(grep -o 'stat::number_of_executed_units: [0-9]*' build-fuzz/tap/fuzz-$$f.log | tail -1 | grep -o '[0-9]*$$') runs" >> build-fuzz/tap/fuzz.tap; \
	  else echo "not ok $$n - fuzz $$f: finding in build-fuzz/findings/ (log build-fuzz/tap/fuzz-$$f.log)" >> build-fuzz/tap/fuzz.tap; \
	       tail -40 build-fuzz/tap/fuzz-$$f.log | sed 's/^/# /' >> build-fuzz/tap/fuzz.tap; fi; \
	done; echo 0 > build-fuzz/tap/fuzz.rc; \
	printf '%-28s %s\n' "fuzz" "$$(grep -c '^ok' build-fuzz/tap/fuzz.tap) ok, $$(grep -c '^not ok' build-fuzz/tap/fuzz.tap) not ok"

fuzz: $(FUZZERS:%=build-fuzz/fuzz_%)
	@$(MAKE) --no-print-directory check-fuzz FUZZ_SECONDS=$(FUZZ_LONG)

# ---- tests -----------------------------------------------------------------
# Every suite speaks TAP into build*/tap/*.tap; tests/summary prints the one
# line over all of them and fails if anything failed.
check: deps-test
	@$(MAKE) --no-print-directory check-unit check-integration B=build
	@$(MAKE) --no-print-directory check-unit check-integration B=build-san
	@$(MAKE) --no-print-directory check-valgrind
	@$(if $(FUZZERS),$(MAKE) --no-print-directory check-fuzz,:)
	@tests/summary build/tap build-san/tap build/tap-valgrind $(if $(FUZZERS),build-fuzz/tap)

B ?= build
check-unit: $(UNITS:%=$(B)/test_%)
	@mkdir -p $(B)/tap
	@for u in $(UNITS); do \
	  (cd tests/unit && CMOCKA_MESSAGE_OUTPUT=TAP ASAN_OPTIONS=detect_leaks=1 \
	     ../../$(B)/test_$$u) > $(B)/tap/unit-$$u.tap 2>&1; \
	  echo "$$?" > $(B)/tap/unit-$$u.rc; \
	  printf '%-28s %s\n' "$(B) unit $$u" "$$(grep -c '^ok' $(B)/tap/unit-$$u.tap) ok, $$(grep -c '^not ok' $(B)/tap/unit-$$u.tap) not ok"; \
	done

check-integration: $(B)/herald
	@mkdir -p $(B)/tap
	@for s in $(SUITES); do \
	  HERALD=$(CURDIR)/$(B)/herald /usr/bin/python3 tests/$$s.py > $(B)/tap/$$s.tap 2>$(B)/tap/$$s.log; \
	  echo "$$?" > $(B)/tap/$$s.rc; \
	  printf '%-28s %s\n' "$(B) $$s" "$$(grep -c '^ok' $(B)/tap/$$s.tap) ok, $$(grep -c '^not ok' $(B)/tap/$$s.tap) not ok"; \
	done

# tests/integration.py once more with every herald run under valgrind's
# memcheck (tests/valgrind-herald): a memory error or a definite leak makes
# that run exit 1, so its test fails, and tests/valgrind-tap adds one TAP
# line over all the reports in build/tap-valgrind/vg/.
check-valgrind: build/herald
	@rm -rf build/tap-valgrind && mkdir -p build/tap-valgrind/vg
	@VALGRIND_HERALD=$(CURDIR)/build/herald VALGRIND_LOGS=$(CURDIR)/build/tap-valgrind/vg \
	  HERALD=$(CURDIR)/tests/valgrind-herald /usr/bin/python3 tests/integration.py \
	  > build/tap-valgrind/integration.tap 2> build/tap-valgrind/integration.log; \
	echo "$$?" > build/tap-valgrind/integration.rc; \
	tests/valgrind-tap build/tap-valgrind/vg > build/tap-valgrind/valgrind.tap; \
	echo 0 > build/tap-valgrind/valgrind.rc; \
	printf '%-28s %s\n' "valgrind integration" "$$(cat build/tap-valgrind/*.tap | grep -c '^ok') ok, $$(cat build/tap-valgrind/*.tap | grep -c '^not ok') not ok"

# ---- demo ------------------------------------------------------------------
# Sub-makes: pkg-config flags are read after deps has installed packages.
demo: deps-demo
	@$(MAKE) --no-print-directory build/herald
	@tests/demo.sh

# ---- benchmarks ------------------------------------------------------------
# Not part of check: they need Postfix's smtp-sink and smtp-source (the
# postfix package; where its postinst starts a local Postfix, stop it if
# you do not want one).
build/bench-ceiling: bench/ceiling.c | build
	@echo "  CCLD    $@"
	@$(CC) -O2 -Wall -Wextra $< $(shell pkg-config --cflags --libs libcurl) -pthread -o $@
bench: deps-bench
	@$(MAKE) --no-print-directory build/herald build/bench-ceiling
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
install: build/herald
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/herald/templates $(DESTDIR)$(PREFIX)/share/doc/herald
	install -m 755 build/herald $(DESTDIR)$(PREFIX)/bin/herald
	install -m 644 man/herald.1 $(DESTDIR)$(PREFIX)/share/man/man1/herald.1
	install -m 644 templates/* $(DESTDIR)$(PREFIX)/share/herald/templates/
	install -m 644 config.example README.md $(DESTDIR)$(PREFIX)/share/doc/herald/
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/herald $(DESTDIR)$(PREFIX)/share/man/man1/herald.1
	rm -rf $(DESTDIR)$(PREFIX)/share/herald $(DESTDIR)$(PREFIX)/share/doc/herald

clean:
	rm -rf build build-san build-fuzz demo-out
