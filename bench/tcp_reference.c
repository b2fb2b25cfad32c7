/* The C-level limit for `onecopy send` to N loopback TCP receivers, and the
 * receivers themselves (the same ones for every sender in bench:compare).
 *
 *   tcp_reference sink N              listen on 127.0.0.1:0, print the port,
 *                                     fork N receivers that read() their
 *                                     connection to the end; exit when all did
 *   tcp_reference write PORT N        stdin -> read() -> write() to each socket
 *   tcp_reference splice PORT N       stdin -> read() -> write() into a stage
 *                                     pipe -> tee() per socket -> splice() out
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK (1024 * 1024)
#define PIPE (1024 * 1024)

static void die(const char *what) { perror(what); exit(1); }

static int sink(int n) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, n) < 0) die("listen");
  if (getsockname(ls, (struct sockaddr *)&a, &len) < 0) die("getsockname");
  printf("%d\n", ntohs(a.sin_port));
  fflush(stdout);
  for (int i = 0; i < n; i++) {
    if (fork() == 0) {
      static char buf[256 * 1024];
      int c = accept(ls, NULL, NULL);
      if (c < 0) die("accept");
      for (ssize_t r; (r = read(c, buf, sizeof buf)) != 0;)
        if (r < 0) die("read");
      return 0;
    }
  }
  int status, failed = 0;
  while (wait(&status) > 0) failed |= !WIFEXITED(status) || WEXITSTATUS(status);
  return failed;
}

static int dial(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return s;
}

static void write_all(int fd, const char *p, ssize_t len) {
  for (ssize_t w; len > 0; p += w, len -= w)
    if ((w = write(fd, p, len)) < 0) die("write");
}

static void splice_all(int from, int to, ssize_t len) {
  for (ssize_t s; len > 0; len -= s)
    if ((s = splice(from, NULL, to, NULL, len, SPLICE_F_MOVE)) <= 0) die("splice");
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "sink")) return sink(atoi(argv[2]));
  if (argc != 4) {
    fprintf(stderr, "usage: %s sink N | write PORT N | splice PORT N\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[2]), n = atoi(argv[3]), use_splice = !strcmp(argv[1], "splice");
  int *out = malloc(sizeof(int) * n), (*branch)[2] = malloc(sizeof(int[2]) * n), stage[2];
  static char buf[CHUNK];
  for (int i = 0; i < n; i++) out[i] = dial(port);
  if (use_splice) {
    if (pipe(stage) < 0) die("pipe");
    fcntl(stage[1], F_SETPIPE_SZ, PIPE);
    for (int i = 0; i < n; i++) {
      if (pipe(branch[i]) < 0) die("pipe");
      fcntl(branch[i][1], F_SETPIPE_SZ, PIPE);
    }
  }
  for (ssize_t len; (len = read(0, buf, CHUNK)) != 0;) {
    if (len < 0) die("read");
    if (!use_splice) {
      for (int i = 0; i < n; i++) write_all(out[i], buf, len);
      continue;
    }
    write_all(stage[1], buf, len); /* the one copy */
    for (int i = 0; i < n - 1; i++) /* branches are empty here, so tee() takes it all */
      if (tee(stage[0], branch[i][1], len, 0) != len) die("tee");
    splice_all(stage[0], branch[n - 1][1], len);
    for (int i = 0; i < n; i++) splice_all(branch[i][0], out[i], len);
  }
  return 0;
}
