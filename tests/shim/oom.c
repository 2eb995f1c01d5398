/* tests/shim/oom.c: an LD_PRELOAD shim that makes realloc fail (NULL,
 * ENOMEM) for requests over $OOMSHIM_OVER bytes on every thread but the
 * main one. herald's growable buffers (util/buf.c) grow with realloc, so
 * this starves exactly an SMTP connection's worker while the main thread
 * still builds whole messages: the failure the out-of-memory tests need,
 * which no real allocator produces on demand.
 *
 * Built by the test that uses it (cc -shared -fPIC -o oom.so oom.c -ldl).
 * Under AddressSanitizer, ASAN_OPTIONS=verify_asan_link_order=0 lets it
 * come first; RTLD_NEXT is then ASan's realloc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static size_t over;

/* Read once libc is up: the first realloc may come before (ASan's own
 * start-up makes some), when getenv has no environment yet. */
__attribute__((constructor)) static void init(void)
{
	const char *v = getenv("OOMSHIM_OVER");
	over = v ? strtoul(v, NULL, 10) : 0;
}

void *realloc(void *p, size_t n)
{
	static void *(*next)(void *, size_t);
	if (!next)
		next = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	if (over && n > over && syscall(SYS_gettid) != getpid()) {
		errno = ENOMEM;
		return NULL;
	}
	return next(p, n);
}
