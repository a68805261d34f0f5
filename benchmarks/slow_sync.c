/* Makes every fsync/fdatasync/msync(MS_SYNC) take at least WFA_SYNC_DELAY_US longer,
 * to measure the engine as on a slower disk. Preloaded by throughput_bench.py
 * --sync-delay-ms; never part of the engine. Build: cc -shared -fPIC -o x.so slow_sync.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static void pause_for_disk(void) {
    const char *us = getenv("WFA_SYNC_DELAY_US");
    long delay = us ? atol(us) : 0;
    struct timespec ts = {delay / 1000000, (delay % 1000000) * 1000};
    if (delay > 0) nanosleep(&ts, NULL);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    pause_for_disk();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    pause_for_disk();
    return real(fd);
}

int msync(void *addr, size_t length, int flags) {
    static int (*real)(void *, size_t, int);
    if (!real) real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
    if (flags & MS_SYNC) pause_for_disk();
    return real(addr, length, flags);
}
