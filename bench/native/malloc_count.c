/* C-heap accounting for bench/tls_memory.py: LD_PRELOADed into a unix MicroPython process, it counts
 * the bytes malloc/calloc/realloc hand out (malloc_usable_size) and, on SIGUSR1, writes
 * "malloc-count current=N peak=M" to stderr and starts a new peak. Mbed TLS allocates its context and
 * record buffers here (the C heap), not in MicroPython's GC heap: on an ESP32 they come from the
 * ESP-IDF heap the same way. A bench tool, not part of the firmware. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static size_t cur, peak;
static void *(*r_malloc)(size_t);
static void (*r_free)(void *);
static void *(*r_calloc)(size_t, size_t);
static void *(*r_realloc)(void *, size_t);
static char boot[8192]; /* dlsym itself calls calloc before r_calloc is known */
static size_t boot_used;

static void init(void) {
    if (!r_malloc) {
        r_malloc = dlsym(RTLD_NEXT, "malloc");
        r_free = dlsym(RTLD_NEXT, "free");
        r_calloc = dlsym(RTLD_NEXT, "calloc");
        r_realloc = dlsym(RTLD_NEXT, "realloc");
    }
}
static void add(void *p) { if (p) { cur += malloc_usable_size(p); if (cur > peak) peak = cur; } }
static void sub(void *p) { if (p) cur -= malloc_usable_size(p); }
static int ours(void *p) { return (char *)p >= boot && (char *)p < boot + sizeof boot; }

void *malloc(size_t n) { init(); void *p = r_malloc(n); add(p); return p; }
void *calloc(size_t a, size_t b) {
    if (!r_calloc) { void *p = boot + boot_used; boot_used += (a * b + 15) & ~(size_t)15; return p; }
    void *p = r_calloc(a, b); add(p); return p;
}
void free(void *p) { if (!p || ours(p)) return; init(); sub(p); r_free(p); }
void *realloc(void *p, size_t n) {
    init();
    if (ours(p)) { void *q = malloc(n); if (q) memcpy(q, p, n); return q; }
    sub(p); void *q = r_realloc(p, n); add(q ? q : p); return q;
}

/* The host program may bring its own snprintf (MicroPython's lacks %zu): format by hand. */
static char *put_num(char *p, size_t v) {
    char tmp[24];
    int i = 0;
    do { tmp[i++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (i) *p++ = tmp[--i];
    return p;
}
static char *put_str(char *p, const char *s) { while (*s) *p++ = *s++; return p; }

static void report(int sig) {
    (void)sig;
    char line[96], *p = line;
    p = put_str(p, "malloc-count current=");
    p = put_num(p, cur);
    p = put_str(p, " peak=");
    p = put_num(p, peak);
    *p++ = '\n';
    if (write(2, line, (size_t)(p - line)) < 0) { /* nothing to do in a signal handler */ }
    peak = cur;
}
__attribute__((constructor)) static void setup(void) { signal(SIGUSR1, report); }
