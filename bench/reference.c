/* The C-level limit for `onecopy tee`, making the same syscalls and nothing else.
 * - A file (or anything not a pipe) on stdin: read() a chunk, write() it into a
 *   stage pipe (the one copy), tee() the stage into every consumer pipe but the
 *   last, splice() it into the last.
 * - A pipe on stdin: no copy at all. Grow it (F_SETPIPE_SZ works on the read
 *   end), wait until it holds bytes, tee() what it holds into every consumer
 *   but the last, splice() as much into the last.
 * Usage: reference OUT... (stdout is consumer 0; the others are paths). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define PIPE (1024 * 1024)

static void die(const char *what) { perror(what); exit(1); }

/* tee() must not be short (a second call would duplicate the head): wait for room first. */
static void wait_room(int fd, int need) {
  for (;;) {
    int queued = 0;
    if (ioctl(fd, FIONREAD, &queued) < 0) die("FIONREAD");
    if (fcntl(fd, F_GETPIPE_SZ) - queued >= need) return;
    struct pollfd p = {fd, POLLOUT, 0};
    poll(&p, 1, 1);
  }
}

/* tee() `len` bytes from the head of `from` to every out but the last, splice() them into the last. */
static void fan(int from, int *out, int n, ssize_t len) {
  for (int i = 0; i < n - 1; i++) {
    wait_room(out[i], len);
    if (tee(from, out[i], len, 0) != len) die("tee");
  }
  for (ssize_t left = len; left > 0;) {
    ssize_t s = splice(from, NULL, out[n - 1], NULL, left, SPLICE_F_MOVE);
    if (s <= 0) die("splice");
    left -= s;
  }
}

static int from_pipe(int *out, int n) {
  fcntl(0, F_SETPIPE_SZ, PIPE);
  for (;;) {
    struct pollfd p = {0, POLLIN, 0};
    if (poll(&p, 1, -1) < 0) die("poll");
    int queued = 0;
    if (ioctl(0, FIONREAD, &queued) < 0) die("FIONREAD");
    if (queued == 0) return 0; /* readable and empty: the writer is gone */
    fan(0, out, n, queued);
  }
}

int main(int argc, char **argv) {
  int n = argc, stage[2];
  int *out = malloc(sizeof(int) * n);
  static char buf[CHUNK];
  struct stat st;
  out[0] = 1;
  for (int i = 1; i < n; i++)
    if ((out[i] = open(argv[i], O_WRONLY)) < 0) die(argv[i]);
  for (int i = 0; i < n; i++) fcntl(out[i], F_SETPIPE_SZ, PIPE);
  if (fstat(0, &st) == 0 && S_ISFIFO(st.st_mode)) return from_pipe(out, n);
  if (pipe(stage) < 0) die("pipe");
  fcntl(stage[1], F_SETPIPE_SZ, PIPE);
  for (;;) {
    ssize_t len = read(0, buf, CHUNK);
    if (len < 0) die("read");
    if (len == 0) return 0;
    for (ssize_t off = 0; off < len;) {
      ssize_t w = write(stage[1], buf + off, len - off);
      if (w < 0) die("write");
      off += w;
    }
    fan(stage[0], out, n, len);
  }
}
