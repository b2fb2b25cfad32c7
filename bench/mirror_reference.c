/* The mirror benchmark's backends, load client and C relay (the limit), all
 * loopback only, for bench/mirror_compare.ts. Built there with `cc -O2 -pthread`.
 *
 *   mirror_reference server           backend: listen on 127.0.0.1:0, print
 *                                     "PORT PGID", fork per connection
 *   mirror_reference relay copy|splice P [S]
 *                                     the C relay: listen on 127.0.0.1:0, print
 *                                     "PORT PGID", fork per connection, a
 *                                     thread per direction; copy: read() then
 *                                     write(); splice: socket -> pipe -> socket
 *                                     with splice(). With S, every client byte
 *                                     goes to shadow S too (inline; tee() for
 *                                     splice), and S's replies are discarded
 *   mirror_reference upload PORT BYTES CONNS
 *                                     CONNS parallel uploads of BYTES each;
 *                                     prints the seconds until the last reply
 *   mirror_reference ping PORT COUNT SECONDS
 *                                     1-byte request/response round trips;
 *                                     prints "p50_us p99_us round_trips"
 *
 * The backend protocol: the client's first byte picks the mode.
 *   'U' + 8-byte big-endian length N + N bytes: the backend discards them
 *       (recv MSG_TRUNC: no copy, so the backend costs little CPU), then
 *       replies with the 8-byte count it received. The upload is done when
 *       the client has that reply: every byte reached the primary and the
 *       answer came back, whatever the proxy does with half-close.
 *   'P': every byte read is written back (echo) until EOF.
 * Each connection prints "U|P BYTES_RECEIVED_IN_TOTAL" on stdout when it ends
 * (one write, atomic on a pipe), so the harness can check that a shadow got
 * the whole stream.
 *
 * Everything stops by itself: servers exit when stdin reaches EOF (the
 * harness is gone) and their connection processes die with them
 * (PR_SET_PDEATHSIG); every process has an alarm() lifetime
 * (ONECOPY_MIRROR_BENCH_LIFETIME seconds, default 900); the client gives up
 * after ONECOPY_MIRROR_BENCH_STALL seconds (default 30) without progress. Servers make their own process group so that
 * the harness can SIGSTOP a whole shadow.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The relay's read() size: ONECOPY_MIRROR_BENCH_RELAY_BUF bytes, default 1 MiB
 * (measured here: 1 MiB beat 64 and 256 KiB). */
static size_t relay_buf = 1024 * 1024;
#define SEND_CHUNK (1024 * 1024)

static void die(const char *what) {
  fprintf(stderr, "mirror_reference: %s: %s\n", what, strerror(errno));
  exit(1);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void lifetime(void) {
  const char *s = getenv("ONECOPY_MIRROR_BENCH_LIFETIME");
  alarm(s ? atoi(s) : 900);
}

static void set_nodelay(int s) {
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Bytes the client has moved so far; the watchdog ends a run that stops moving. */
static _Atomic uint64_t progress;

/* Socket timeouts don't fire here while a zero window is being probed, so the
 * client watches its own progress: ONECOPY_MIRROR_BENCH_STALL seconds (default 30)
 * without a byte moving ends the run with status 3. */
static void *watchdog(void *arg) {
  (void)arg;
  const char *s = getenv("ONECOPY_MIRROR_BENCH_STALL");
  int limit = s && atoi(s) > 0 ? atoi(s) : 30, still = 0;
  for (uint64_t last = progress;; last = progress) {
    sleep(1);
    still = progress == last ? still + 1 : 0;
    if (still >= limit) {
      fprintf(stderr, "mirror_reference: no progress for %d s: stalled\n", limit);
      _exit(3);
    }
  }
  return NULL;
}

static void start_watchdog(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, watchdog, NULL) != 0) die("pthread_create");
}

static int dial(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (s < 0) die("socket");
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = errno;
    close(s);
    errno = e;
    return -1;
  }
  return s;
}

static int write_all(int fd, const char *p, size_t len) {
  for (ssize_t w; len > 0; p += w, len -= w) {
    if ((w = write(fd, p, len)) < 0) {
      if (errno == EINTR) { w = 0; continue; }
      return -1;
    }
    progress += w;
  }
  return 0;
}

/* Reads exactly len bytes; 0 on success, -1 on EOF or error. */
static int read_all(int fd, char *p, size_t len) {
  for (ssize_t r; len > 0; p += r, len -= r) {
    if ((r = read(fd, p, len)) <= 0) {
      if (r < 0 && errno == EINTR) { r = 0; continue; }
      return -1;
    }
    progress += r;
  }
  return 0;
}

/* ---- listeners: one accept loop shared by the backend and the relay ---- */

static int listen_any(void) {
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0)
    die("listen");
  if (getsockname(ls, (struct sockaddr *)&a, &len) < 0) die("getsockname");
  printf("%d %d\n", ntohs(a.sin_port), (int)getpid());
  fflush(stdout);
  return ls;
}

/* Accepts until stdin reaches EOF; forks `serve` per connection, reaps children
 * (so that their CPU time adds up in the parent's /proc stat). */
static int accept_loop(void (*serve)(int c, void *arg), void *arg) {
  if (setpgid(0, 0) < 0) die("setpgid");
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* our parent is `timeout` or the harness */
  lifetime();
  int ls = listen_any();
  pid_t self = getpid();
  for (;;) {
    struct pollfd p[2] = {{.fd = ls, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    if (poll(p, 2, 100) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (p[1].revents) {
      char b;
      if (read(0, &b, 1) <= 0) return 0; /* the harness is gone or done */
    }
    if (!(p[0].revents & POLLIN)) continue;
    int c = accept(ls, NULL, NULL);
    if (c < 0) continue;
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != self) _exit(0);
      close(ls);
      lifetime();
      serve(c, arg);
      _exit(0);
    }
    close(c);
  }
}

/* ---- the backend ---- */

static void serve_backend(int c, void *arg) {
  (void)arg;
  static char buf[256 * 1024];
  char mode, line[64];
  uint64_t total = 0;
  set_nodelay(c);
  if (read_all(c, &mode, 1) < 0) return; /* a readiness probe: no line */
  total = 1;
  if (mode == 'U') {
    unsigned char h[8];
    if (read_all(c, (char *)h, 8) < 0) goto done;
    total += 8;
    uint64_t want = 0, got = 0;
    for (int i = 0; i < 8; i++) want = want << 8 | h[i];
    while (got < want) {
      size_t n = want - got < sizeof buf ? want - got : sizeof buf;
      ssize_t r = recv(c, NULL, n, MSG_TRUNC); /* TCP: discard without copying */
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) goto done;
      got += r;
      total += r;
    }
    for (int i = 0; i < 8; i++) h[i] = got >> (56 - 8 * i);
    if (write_all(c, (char *)h, 8) < 0) goto done;
  }
  for (ssize_t r; (r = read(c, buf, sizeof buf)) != 0;) {
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    total += r;
    if (mode == 'P' && write_all(c, buf, r) < 0) break;
  }
done:
  snprintf(line, sizeof line, "%c %llu\n", mode, (unsigned long long)total);
  write_all(1, line, strlen(line));
}

/* ---- the C relay ---- */

struct relay_ports {
  int primary, shadow;
  int splice; /* 0: read() + write(); 1: socket -> pipe -> socket splice(), tee() for the shadow */
};

/* One direction of a connection: from -> to, and every byte to shadow too if it is >= 0. */
struct leg {
  int from, to, shadow;
};

/* Drops the shadow of this leg: the relay writes it inline, so its failure can't stop us. */
static void drop_shadow(struct leg *l) {
  shutdown(l->shadow, SHUT_RDWR);
  l->shadow = -1;
}

/* read() then write(); 0 at EOF, -1 when either side failed. */
static int copy_leg(struct leg *l) {
  char *buf = malloc(relay_buf);
  for (ssize_t r; (r = read(l->from, buf, relay_buf)) != 0;) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || write_all(l->to, buf, r) < 0) return -1;
    if (l->shadow >= 0 && write_all(l->shadow, buf, r) < 0) drop_shadow(l);
  }
  return 0;
}

static int splice_all(int from, int to, size_t len) {
  for (ssize_t n; len > 0; len -= n) {
    if ((n = splice(from, NULL, to, NULL, len, SPLICE_F_MOVE)) <= 0) {
      if (n < 0 && errno == EINTR) { n = 0; continue; }
      return -1;
    }
  }
  return 0;
}

static int pipe_of(int fd[2]) {
  if (pipe(fd) < 0) return -1;
  fcntl(fd[1], F_SETPIPE_SZ, (int)relay_buf); /* may fail (pipe-user-pages-soft): keep 64 KiB */
  return 0;
}

/* splice() the socket into a pipe, tee() it to the shadow's pipe, splice() both out.
 * Blocking sockets: a splice from one returns what has arrived once nothing more is
 * queued; SPLICE_F_NONBLOCK only spares us waiting on the (empty) pipe. */
static int splice_leg(struct leg *l) {
  int in[2], sh[2] = {-1, -1}, rc = 0;
  if (pipe_of(in) < 0) return -1;
  if (l->shadow >= 0 && pipe_of(sh) < 0) drop_shadow(l);
  for (;;) {
    ssize_t n = splice(l->from, NULL, in[1], NULL, relay_buf, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
      struct pollfd p = {.fd = l->from, .events = POLLIN};
      poll(&p, 1, 1000);
      continue;
    }
    if (n <= 0) {
      rc = n;
      break;
    }
    /* the shadow's pipe is empty here, so tee() takes all n or the shadow goes */
    if (l->shadow >= 0 && tee(in[0], sh[1], n, 0) != n) drop_shadow(l);
    if (splice_all(in[0], l->to, n) < 0) {
      rc = -1;
      break;
    }
    if (l->shadow >= 0 && splice_all(sh[0], l->shadow, n) < 0) drop_shadow(l);
  }
  close(in[0]), close(in[1]);
  if (sh[0] >= 0) close(sh[0]), close(sh[1]);
  return rc;
}

static int use_splice;

/* Runs a leg to its end; EOF becomes a half-close, a failure a reset-like full shutdown. */
static void *run_leg(void *arg) {
  struct leg *l = arg;
  int rc = use_splice ? splice_leg(l) : copy_leg(l);
  shutdown(l->to, rc < 0 ? SHUT_RDWR : SHUT_WR);
  if (l->shadow >= 0) shutdown(l->shadow, SHUT_WR);
  return NULL;
}

/* Whatever the shadow answers is read and thrown away. */
static void *drain(void *arg) {
  char *buf = malloc(relay_buf);
  int s = *(int *)arg;
  while (read(s, buf, relay_buf) > 0) {}
  return NULL;
}

static void serve_relay(int c, void *arg) {
  struct relay_ports *ports = arg;
  int p = dial(ports->primary), s = ports->shadow ? dial(ports->shadow) : -1;
  if (p < 0) return;
  use_splice = ports->splice;
  set_nodelay(c);
  set_nodelay(p);
  pthread_t down, drainer;
  struct leg up = {.from = c, .to = p, .shadow = s}, back = {.from = p, .to = c, .shadow = -1};
  pthread_create(&down, NULL, run_leg, &back);
  if (s >= 0) {
    set_nodelay(s);
    pthread_create(&drainer, NULL, drain, &s);
  }
  run_leg(&up); /* the shadow is written inline: a stalled shadow stalls the primary */
  pthread_join(down, NULL); /* not the drainer: a shadow never holds us */
}

/* ---- the load client ---- */

struct upload {
  int port;
  uint64_t bytes;
  pthread_barrier_t *start;
  double end;
  const char *failed; /* the step that failed, with errno in err */
  int err;
};

static void *upload_one(void *arg) {
  static char data[SEND_CHUNK]; /* zeros: the backends only count bytes */
  struct upload *u = arg;
  pthread_barrier_wait(u->start);
  int s = dial(u->port);
  if (s < 0) {
    u->failed = "connect";
    u->err = errno;
    return NULL;
  }
  unsigned char h[9] = {'U'};
  for (int i = 0; i < 8; i++) h[1 + i] = u->bytes >> (56 - 8 * i);
  if (write_all(s, (char *)h, 9) < 0) u->failed = "write";
  for (uint64_t left = u->bytes; left > 0 && !u->failed;) {
    size_t n = left < SEND_CHUNK ? left : SEND_CHUNK;
    if (write_all(s, data, n) < 0) u->failed = "write";
    left -= n;
  }
  if (!u->failed) {
    errno = 0; /* stays 0 on EOF */
    if (read_all(s, (char *)h, 8) < 0) u->failed = "read the reply";
  }
  u->err = errno;
  if (!u->failed) {
    uint64_t got = 0;
    for (int i = 0; i < 8; i++) got = got << 8 | h[i];
    if (got != u->bytes) u->failed = "the primary's count differs";
    u->err = 0;
  }
  u->end = now();
  close(s);
  return NULL;
}

static int upload(int port, uint64_t bytes, int conns) {
  pthread_t *t = calloc(conns, sizeof *t);
  struct upload *u = calloc(conns, sizeof *u);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, conns + 1);
  for (int i = 0; i < conns; i++) {
    u[i] = (struct upload){.port = port, .bytes = bytes, .start = &start};
    if (pthread_create(&t[i], NULL, upload_one, &u[i]) != 0) die("pthread_create");
  }
  start_watchdog();
  pthread_barrier_wait(&start);
  double t0 = now(), end = t0;
  int failed = 0;
  for (int i = 0; i < conns; i++) {
    pthread_join(t[i], NULL);
    if (u[i].failed && !failed++)
      fprintf(stderr, "mirror_reference: upload: %s: %s\n", u[i].failed,
              u[i].err ? strerror(u[i].err) : "EOF");
    if (u[i].end > end) end = u[i].end;
  }
  if (failed) {
    fprintf(stderr, "mirror_reference: %d of %d uploads failed\n", failed, conns);
    return 1;
  }
  printf("%.6f\n", end - t0);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int ping(int port, int count, double seconds) {
  start_watchdog();
  int s = dial(port), warm = count / 10 < 1000 ? count / 10 : 1000;
  if (s < 0) die("connect");
  set_nodelay(s);
  double *rtt = calloc(count, sizeof *rtt), t0 = now();
  char b = 'P';
  if (write_all(s, &b, 1) < 0) die("write");
  int n = 0, trips = 0;
  for (int i = 0; i < warm + count && now() - t0 < seconds; i++, trips++) {
    double t = now();
    b = (char)i;
    if (write_all(s, &b, 1) < 0 || read_all(s, &b, 1) < 0) die("ping");
    if (i >= warm) rtt[n++] = (now() - t) * 1e6;
  }
  close(s);
  if (n == 0) {
    fprintf(stderr, "mirror_reference: no timed round trip within %.0f s\n", seconds);
    return 1;
  }
  qsort(rtt, n, sizeof *rtt, cmp_double);
  printf("%.2f %.2f %d\n", rtt[n / 2], rtt[(int)(n * 0.99)], trips);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 2 && !strcmp(argv[1], "server")) return accept_loop(serve_backend, NULL);
  if ((argc == 4 || argc == 5) && !strcmp(argv[1], "relay") &&
      (!strcmp(argv[2], "copy") || !strcmp(argv[2], "splice"))) {
    struct relay_ports ports = {atoi(argv[3]), argc == 5 ? atoi(argv[4]) : 0,
                                !strcmp(argv[2], "splice")};
    const char *b = getenv("ONECOPY_MIRROR_BENCH_RELAY_BUF");
    if (b && atoi(b) > 0) relay_buf = atoi(b);
    return accept_loop(serve_relay, &ports);
  }
  lifetime();
  if (argc == 5 && !strcmp(argv[1], "upload"))
    return upload(atoi(argv[2]), strtoull(argv[3], NULL, 10), atoi(argv[4]));
  if (argc == 5 && !strcmp(argv[1], "ping"))
    return ping(atoi(argv[2]), atoi(argv[3]), atof(argv[4]));
  fprintf(stderr,
          "usage: %s server | relay copy|splice PRIMARY_PORT [SHADOW_PORT] | upload PORT BYTES CONNS | "
          "ping PORT COUNT SECONDS\n",
          argv[0]);
  return 2;
}
