# ferry - every entry point.  `make help` lists them.
VERSION   := $(shell sed -n 's/^\#define FERRY_VERSION_STRING[[:space:]]*"\(.*\)".*/\1/p' lib/ferry.h)
SOVERSION := $(shell sed -n 's/^\#define FERRY_VERSION_MAJOR[[:space:]]*\([0-9]*\).*/\1/p' lib/ferry.h)

B        ?= build
CC       ?= cc
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
MANDIR   ?= $(PREFIX)/share/man
PKGDIR   ?= $(LIBDIR)/pkgconfig
DESTDIR  ?=
CFLAGS   ?= -O2 -g
CPPFLAGS ?=
LDFLAGS  ?=
SAN      ?=
FUZZ_SECONDS ?= 20

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wformat=2 -Wvla -Wcast-qual -Werror
DEPS_CFLAGS := $(shell pkg-config --cflags libssh2 libxxhash zlib 2>/dev/null)
DEPS_LIBS   := $(shell pkg-config --libs libssh2 libxxhash zlib 2>/dev/null || echo -lssh2 -lxxhash -lz)
ALL_CFLAGS := -std=gnu11 $(WARN) -fPIC -fvisibility=hidden -D_GNU_SOURCE \
              -DFERRY_BUILDING -Ilib -I. $(CPPFLAGS) $(DEPS_CFLAGS) $(SAN) $(CFLAGS) -MMD -MP
LDLIBS := $(DEPS_LIBS) -lpthread
# The ferry program takes libssh2 and libcrypto from their static archives
# when they are installed (not in a sanitizer build): loading the shared
# libcrypto costs about 1.5 ms at every start, most of what a call through
# a holder (--persist) costs on the client's side.  STATIC_SSH=0: shared.
STATIC_SSH ?= $(if $(SAN),0,$(if $(and $(wildcard $(shell $(CC) -print-file-name=libssh2.a)),$(wildcard $(shell $(CC) -print-file-name=libcrypto.a))),1,0))
STATIC_SSH_LIBS := -Wl,-Bstatic -lssh2 -lcrypto -Wl,-Bdynamic -lxxhash -lz -lpthread
CLI_LIBS := $(if $(filter 1,$(STATIC_SSH)),$(STATIC_SSH_LIBS),$(LDLIBS))

LIB_SRC  := $(sort $(wildcard lib/*.c sync/*.c exec/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/obj/%.o)
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/obj/%.o)
TEST_DIRS := lib sync exec cli
TEST_COMMON := $(sort $(wildcard tests/common/*.c))
TEST_BINS := $(foreach d,$(TEST_DIRS),$(if $(wildcard tests/$(d)/*.c),$(B)/tests/test-$(d)))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

LIBA  := $(B)/libferry.a
LIBSO := $(B)/libferry.so.$(VERSION)

.PHONY: all deps test check asan ubsan format check-format lint install uninstall \
        clean demo bench fuzz fuzz-build header-test help tests man check-layers
all: $(LIBA) $(LIBSO) $(B)/ferry

help:
	@echo "make [all] | deps | test | asan | ubsan | demo | bench | fuzz | format |"
	@echo "     check-format | check-layers | lint | install | uninstall | clean"

deps:
	@sh tests/deps.sh

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(B)
	rm -f $@ && ar rcs $@ $^

$(LIBSO): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libferry.so.$(SOVERSION) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)
	ln -sf libferry.so.$(VERSION) $(B)/libferry.so.$(SOVERSION)
	ln -sf libferry.so.$(VERSION) $(B)/libferry.so

$(B)/ferry: $(CLI_OBJ) $(LIBA)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIBA) $(CLI_LIBS)


# ---- tests ------------------------------------------------------------------
TEST_CFLAGS := $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) -Itests/common -DFERRY_SRCDIR=\"$(CURDIR)\" -DFERRY_BUILDDIR=\"$(abspath $(B))\"
$(B)/tobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

.SECONDARY:
.SECONDEXPANSION:
$(B)/tests/test-%: $$(addprefix $(B)/tobj/,$$(addsuffix .o,$$(basename $$(sort $$(wildcard tests/$$*/*.c)) $(TEST_COMMON)))) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) -lcriterion $(LDLIBS)

tests: all $(TEST_BINS) $(BENCH_BINS) header-test

header-test: $(B)/header-test.stamp
$(B)/header-test.stamp: lib/ferry.h
	@mkdir -p $(B)
	printf '#include "ferry.h"\nint main(void){return ferry_strerror(0)==0;}\n' > $(B)/ht.c
	cc -std=c99 -pedantic -Wall -Wextra -Werror -Ilib -fsyntax-only $(B)/ht.c
	c++ -x c++ -std=c++11 -pedantic -Wall -Wextra -Werror -Ilib -fsyntax-only $(B)/ht.c
	touch $@

test: deps
	$(MAKE) tests
	B=$(B) SAN='$(SAN)' FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh

check: test

asan:
	$(MAKE) B=build/asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" FUZZ_SECONDS=0 test

ubsan:
	$(MAKE) B=build/ubsan SAN="-fsanitize=undefined -fno-sanitize-recover=all" FUZZ_SECONDS=0 test

# ---- fuzzing (clang libFuzzer) ------------------------------------------------
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzz/%)
fuzz-build: $(FUZZ_BINS)
$(B)/fuzz/%: tests/fuzz/%.c $(LIB_SRC)
	@mkdir -p $(dir $@)
	clang -std=gnu11 -g -O1 -D_GNU_SOURCE -DFERRY_FUZZ -Ilib -I. -Itests/common \
	    -fsanitize=fuzzer,address,undefined $(CPPFLAGS) $(LDFLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS)

fuzz: fuzz-build
	@for f in $(FUZZ_BINS); do \
	    mkdir -p $(B)/fuzz/corpus-$$(basename $$f); \
	    echo "fuzz $$f for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(B)/fuzz/ $(B)/fuzz/corpus-$$(basename $$f) tests/fuzz/corpus/$$(basename $$f) >$(B)/fuzz/$$(basename $$f).log 2>&1; \
	    rc=$$?; tail -12 $(B)/fuzz/$$(basename $$f).log; [ $$rc -eq 0 ] || exit 1; \
	done

# ---- bench --------------------------------------------------------------------
$(B)/bench/%: bench/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -fvisibility=hidden,$(ALL_CFLAGS)) $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS) -lm

bench: deps all $(BENCH_BINS)
	B=$(B) RTT="$(RTT)" bench/run.sh

man: $(B)/ferry
	cli/mkman.sh $(B)/ferry > cli/ferry.1

demo: deps all
	B=$(B) cli/demo.sh

# ---- style --------------------------------------------------------------------
STYLE_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find lib sync exec cli tests bench -name '*.[ch]')
format:
	clang-format -i $(STYLE_SRC)
check-format:
	@clang-format --dry-run --Werror $(STYLE_SRC)
check-layers:
	@B=$(B) CC=$(CC) tests/layers.sh
lint:
	@! grep -nE '\<(sprintf|vsprintf|strcpy|strcat|atoi|gets)[[:space:]]*\(' $(STYLE_SRC) \
	    || { echo "lint: banned function (use snprintf, memcpy with a checked length, strtol)"; exit 1; }

# ---- install ------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PKGDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(B)/ferry $(DESTDIR)$(BINDIR)/ferry
	install -m 644 $(LIBA) $(DESTDIR)$(LIBDIR)/libferry.a
	install -m 755 $(LIBSO) $(DESTDIR)$(LIBDIR)/
	ln -sf libferry.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libferry.so.$(SOVERSION)
	ln -sf libferry.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libferry.so
	install -m 644 lib/ferry.h $(DESTDIR)$(INCDIR)/ferry.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' lib/ferry.pc.in > $(DESTDIR)$(PKGDIR)/ferry.pc.tmp
	chmod 644 $(DESTDIR)$(PKGDIR)/ferry.pc.tmp && mv -f $(DESTDIR)$(PKGDIR)/ferry.pc.tmp $(DESTDIR)$(PKGDIR)/ferry.pc
	if [ -f cli/ferry.1 ]; then install -m 644 cli/ferry.1 $(DESTDIR)$(MANDIR)/man1/ferry.1; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ferry $(DESTDIR)$(LIBDIR)/libferry.a \
	      $(DESTDIR)$(LIBDIR)/libferry.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libferry.so.$(SOVERSION) \
	      $(DESTDIR)$(LIBDIR)/libferry.so $(DESTDIR)$(INCDIR)/ferry.h \
	      $(DESTDIR)$(PKGDIR)/ferry.pc $(DESTDIR)$(MANDIR)/man1/ferry.1

clean:
	rm -rf build

-include $(shell find $(B) -name '*.d' 2>/dev/null)
