/* A program that leaves by _exit, as forked workers do. The parent makes
 * three one-shot SHA256() calls of 1 MiB and four of 1000 bytes, starts a
 * vfork child that leaves at once by _exit (it shares the parent's memory,
 * and with it the parent's counts), then a forked child that makes one call
 * of each size and leaves by _exit, and finally leaves by _exit itself: 9
 * calls in 2 processes. It prints the last digest's first byte. With the
 * argument "kill" the forked child is killed (SIGKILL) instead: it leaves
 * no report, only its counts. */
#define _GNU_SOURCE
#include <openssl/sha.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned char md[32];

static void hash_calls(int large, int small) {
  static unsigned char buf[1 << 20];
  for (int i = 0; i < large + small; ++i) {
    buf[i] = (unsigned char)i;
    SHA256(buf, i < large ? sizeof buf : 1000, md);
  }
}

int main(int argc, char** argv) {
  const int killed = argc > 1 && !strcmp(argv[1], "kill");
  int st = 0;
  hash_calls(3, 4);
  pid_t v = vfork();
  if (v == 0) _exit(0);
  if (v < 0 || waitpid(v, &st, 0) != v || !WIFEXITED(st)) return 2;
  pid_t f = fork();
  if (f == 0) {
    hash_calls(1, 1);
    if (killed) raise(SIGKILL);
    _exit(0);
  }
  if (f < 0 || waitpid(f, &st, 0) != f || (killed ? !WIFSIGNALED(st) : !WIFEXITED(st))) return 3;
  printf("%02x\n", md[0]);
  fflush(stdout);
  _exit(0);
}
