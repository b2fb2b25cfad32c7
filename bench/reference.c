/* The C-level limit for `onecopy tee` with a file on stdin: read() a chunk,
 * write() it into a stage pipe (the one copy), tee() the stage into every
 * consumer pipe but the last, splice() it into the last. Nothing else.
 * Usage: reference OUT... (stdout is consumer 0; the others are paths). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
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

int main(int argc, char **argv) {
  int n = argc, stage[2];
  int *out = malloc(sizeof(int) * n);
  static char buf[CHUNK];
  out[0] = 1;
  for (int i = 1; i < n; i++)
    if ((out[i] = open(argv[i], O_WRONLY)) < 0) die(argv[i]);
  if (pipe(stage) < 0) die("pipe");
  fcntl(stage[1], F_SETPIPE_SZ, PIPE);
  for (int i = 0; i < n; i++) fcntl(out[i], F_SETPIPE_SZ, PIPE);
  for (;;) {
    ssize_t len = read(0, buf, CHUNK);
    if (len < 0) die("read");
    if (len == 0) return 0;
    for (ssize_t off = 0; off < len;) {
      ssize_t w = write(stage[1], buf + off, len - off);
      if (w < 0) die("write");
      off += w;
    }
    for (int i = 0; i < n - 1; i++) {
      wait_room(out[i], len);
      if (tee(stage[0], out[i], len, 0) != len) die("tee");
    }
    for (ssize_t left = len; left > 0;) {
      ssize_t s = splice(stage[0], NULL, out[n - 1], NULL, left, SPLICE_F_MOVE);
      if (s <= 0) die("splice");
      left -= s;
    }
  }
}
