/** The raw syscall wrappers against real kernel objects (issue 2). */

import assert from "node:assert/strict";
import * as raw from "../ffi/raw.ts";
import { OnecopyError } from "../ffi/errors.ts";
import { shimLayout } from "../ffi/engine.ts";
import { expectedLayout, parseLayout } from "../ffi/layout.ts";
import { expectedMirrorLayout } from "../ffi/mirror_layout.ts";
import { patternBytes, tempDir } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function pipe(flags = raw.O_CLOEXEC) {
  const [r, w] = raw.pipe2(flags);
  return {
    r,
    w,
    [Symbol.dispose]() {
      for (const fd of [this.r, this.w]) if (fd >= 0) raw.close(fd);
    },
  };
}

function readAll(fd: number, n: number): string {
  const buf = new Uint8Array(n);
  return dec.decode(buf.subarray(0, raw.read(fd, buf)));
}

function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof OnecopyError, String(err));
    return err.code;
  }
  assert.fail("expected an OnecopyError");
}

Deno.test("pipe round trip", () => {
  using p = pipe();
  assert.equal(raw.write(p.w, enc.encode("hello")), 5);
  assert.equal(raw.fionread(p.r), 5);
  assert.equal(readAll(p.r, 16), "hello");
});

Deno.test("tee duplicates without consuming, and returns 0 once the writer is gone", () => {
  using a = pipe();
  using b = pipe();
  raw.write(a.w, enc.encode("stable bytes"));
  assert.equal(raw.tee(a.r, b.w, 1 << 20), 12);
  assert.equal(raw.fionread(a.r), 12, "tee must not consume its input");
  assert.equal(readAll(b.r, 64), "stable bytes");
  // A second tee duplicates the head again: the reason a short tee cannot be "continued".
  assert.equal(raw.tee(a.r, b.w, 6), 6);
  assert.equal(readAll(b.r, 64), "stable");
  readAll(a.r, 64);
  raw.close(a.w);
  a.w = -1;
  assert.equal(raw.tee(a.r, b.w, 100), 0, "empty input with no writer is EOF");
});

Deno.test("non-blocking tee of an empty pipe is EAGAIN", () => {
  using a = pipe();
  using b = pipe();
  assert.equal(errno(() => raw.tee(a.r, b.w, 100, raw.SPLICE_F_NONBLOCK)), "EAGAIN");
});

Deno.test("splice returns partial counts when the pipe fills", () => {
  using dir = tempDir();
  const path = `${dir.path}/data`;
  Deno.writeFileSync(path, patternBytes(300_000));
  const fd = raw.open(path, raw.O_RDONLY);
  using p = pipe(raw.O_CLOEXEC | raw.O_NONBLOCK);
  try {
    const size = raw.getPipeSize(p.w);
    const moved = raw.splice(fd, p.w, 300_000, raw.SPLICE_F_NONBLOCK);
    assert.ok(moved > 0 && moved <= size, `moved ${moved} into a ${size}-byte pipe`);
    assert.equal(raw.fionread(p.r), moved);
    const off = new BigInt64Array([10n]);
    const buf = new Uint8Array(moved);
    raw.read(p.r, buf);
    assert.equal(raw.splice(fd, p.w, 5, 0, off), 5);
    assert.equal(off[0], 15n, "the kernel advances an explicit offset");
  } finally {
    raw.close(fd);
  }
});

Deno.test("vmsplice puts a buffer into a pipe, and the pipe keeps referencing its pages", () => {
  using p = pipe();
  const addr = raw.mmap(4096, raw.PROT_READ | raw.PROT_WRITE, raw.MAP_PRIVATE | raw.MAP_ANONYMOUS);
  const page = raw.memoryAt(addr, 4096);
  try {
    page.set(enc.encode("original"));
    assert.equal(raw.vmsplice(p.w, page.subarray(0, 8)), 8);
    page.set(enc.encode("CHANGED!")); // the hazard onecopy's vmsplice method never allows
    assert.equal(readAll(p.r, 8), "CHANGED!", "a reused vmsplice buffer changes what readers get");
  } finally {
    raw.munmap(addr, 4096);
  }
});

Deno.test("F_SETPIPE_SZ grows to pipe-max-size; past it EPERM (or, for root, up to the kernel's own limit)", () => {
  using p = pipe();
  const max = Number(Deno.readTextFileSync("/proc/sys/fs/pipe-max-size"));
  assert.equal(raw.setPipeSize(p.w, max), max);
  assert.equal(raw.getPipeSize(p.r), max);
  if (Deno.uid() === 0) {
    // CAP_SYS_RESOURCE lifts pipe-max-size; sizes past 2^31 are invalid for everyone.
    assert.equal(errno(() => raw.setPipeSize(p.w, 2 ** 31 + 1)), "EINVAL");
  } else {
    assert.equal(errno(() => raw.setPipeSize(p.w, max * 2)), "EPERM");
  }
});

Deno.test("errno mapping: EBADF on a closed fd, EINVAL tee into the same pipe, ENOENT with the path", () => {
  const [r, w] = raw.pipe2();
  raw.close(r);
  raw.close(w);
  assert.equal(errno(() => raw.write(w, enc.encode("x"))), "EBADF");
  using p = pipe();
  assert.equal(errno(() => raw.tee(p.r, p.w, 10)), "EINVAL");
  try {
    raw.open("/no/such/file", raw.O_RDONLY);
    assert.fail("open succeeded");
  } catch (err) {
    assert.ok(err instanceof OnecopyError);
    assert.equal(err.errno, 2);
    assert.equal(err.syscall, "open");
    assert.match(err.message, /^\/no\/such\/file: no such file or directory \(open: ENOENT\)$/);
  }
});

Deno.test("poll, eventfd, statx and sockets behave as the kernel says", () => {
  using p = pipe();
  assert.deepEqual(raw.poll([{ fd: p.r, events: raw.POLLIN }], 0), [0]);
  raw.write(p.w, enc.encode("x"));
  assert.deepEqual(raw.poll([{ fd: p.r, events: raw.POLLIN }], 0), [raw.POLLIN]);
  const ev = raw.eventfd();
  try {
    assert.equal(errno(() => raw.read(ev, new Uint8Array(8))), "EAGAIN");
    raw.write(ev, new Uint8Array(new BigUint64Array([3n]).buffer));
    const got = new BigUint64Array(1);
    raw.read(ev, new Uint8Array(got.buffer));
    assert.equal(got[0], 3n);
  } finally {
    raw.close(ev);
  }
  assert.equal(raw.statx(p.r).type, "fifo");
  assert.equal(raw.statx("/dev/null").type, "char");
  const s = raw.socket(raw.AF_INET, raw.SOCK_STREAM);
  try {
    assert.equal(raw.statx(s).type, "socket");
    assert.equal(raw.getsockoptInt(s, raw.SOL_SOCKET, raw.SO_ERROR), 0);
  } finally {
    raw.close(s);
  }
});

Deno.test("the shim's own description of its ABI matches ffi/layout.ts, ffi/mirror_layout.ts and ffi/symbols.ts", () => {
  const expected = new Map([...expectedLayout(), ...expectedMirrorLayout()]);
  assert.deepEqual(parseLayout(shimLayout()), expected);
});
