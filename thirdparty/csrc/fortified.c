/* C code compiled with -D_FORTIFY_SOURCE=2 (as distributions build C
 * libraries): where the compiler knows a buffer's size but not the length
 * asked for, glibc's headers turn read/recv/pread/poll into the checked
 * entry points __read_chk, __recv_chk, __pread64_chk, __poll_chk. Each
 * function returns what the call returned (or -errno), and for reads the
 * sum of the bytes read, so the test can check the data. Lengths are not
 * clamped here (the compiler would then know them and call the plain
 * names): the Rust wrappers clamp them, and a larger one would be caught
 * by the check and abort, as fortified code does. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static long sum_or_err(long r, const unsigned char *buf) {
    if (r < 0)
        return -errno;
    long s = 0;
    for (long i = 0; i < r; i++)
        s += buf[i];
    return s;
}

long ftf_read(int fd, unsigned long n) {
    unsigned char buf[256];
    return sum_or_err(read(fd, buf, n), buf);
}

long ftf_recv(int fd, unsigned long n) {
    unsigned char buf[256];
    return sum_or_err(recv(fd, buf, n, 0), buf);
}

long ftf_pread(int fd, unsigned long n, long off) {
    unsigned char buf[256];
    return sum_or_err(pread(fd, buf, n, off), buf);
}

int ftf_poll_in(int fd, unsigned long nfds, int timeout_ms) {
    struct pollfd p[4] = {{.fd = fd, .events = POLLIN}, {.fd = -1}, {.fd = -1}, {.fd = -1}};
    int r = poll(p, nfds, timeout_ms);
    return r < 0 ? -errno : r;
}
