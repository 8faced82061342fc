/* What a resident page and a stack guard cost on this machine, without any
 * runtime: N slots of 67 pages (a default coroutine stack slot: 256 KiB +
 * the TLS block + guard) in one MAP_NORESERVE mapping; time per slot to
 * install a guard page with madvise(MADV_GUARD_INSTALL) one call each, the
 * same batched 1024 per process_madvise call, and to first-touch the top 2
 * pages of each slot (what a blocked coroutine with its own TLS block has
 * resident). BENCHMARKS.md "Session 4". Build and run:
 *   cc -O2 benches/fault_probe.c -o /tmp/fault_probe && /tmp/fault_probe
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
static double now(void) {
  struct timespec a;
  clock_gettime(CLOCK_MONOTONIC, &a);
  return a.tv_sec * 1e9 + a.tv_nsec;
}
int main(void) {
  size_t n = 200000, slot = 67 * 4096;
  char *p = mmap(0, n * slot, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  char *q = mmap(0, n * slot, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED || q == MAP_FAILED) return perror("mmap"), 1;
  double a = now();
  for (size_t i = 0; i < n; i++)
    if (madvise(p + i * slot, 4096, MADV_GUARD_INSTALL)) return perror("madvise"), 1;
  double b = now();
  printf("madvise each: %.0f ns/guard\n", (b - a) / n);
  int pidfd = syscall(SYS_pidfd_open, getpid(), 0);
  static struct iovec iov[1024];
  a = now();
  for (size_t i = 0; i < n; i += 1024) {
    size_t k = n - i < 1024 ? n - i : 1024;
    for (size_t j = 0; j < k; j++) {
      iov[j].iov_base = q + (i + j) * slot;
      iov[j].iov_len = 4096;
    }
    if (syscall(SYS_process_madvise, pidfd, iov, k, MADV_GUARD_INSTALL, 0) < 0)
      return perror("process_madvise"), 1;
  }
  b = now();
  printf("process_madvise batch: %.0f ns/guard\n", (b - a) / n);
  a = now();
  for (size_t i = 0; i < n; i++) {
    q[i * slot + slot - 1] = 1;
    q[i * slot + slot - 4097] = 1;
  }
  b = now();
  printf("touch 2 pages: %.0f ns/slot\n", (b - a) / n);
  return 0;
}
