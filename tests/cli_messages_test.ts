/**
 * What the onecopy command says when something is wrong, black-box: one line
 * whatever the user typed (a newline in a value), the documented exit code
 * (usage errors: 2, 1 for tee as GNU tee), the checksum line `sha256sum -c`
 * reads back, and `recv --json` naming failed connections.
 */

import assert from "node:assert/strict";
import { type Run, sh, tempDir } from "./helpers.ts";

/** Asserts a usage error: one message line, the "Try" line, nothing on stdout. */
function assertUsage(r: Run, code: number, message: RegExp, what: string): void {
  assert.equal(r.code, code, `${what}: ${r.err}`);
  assert.equal(r.out, "", what);
  const lines = r.err.split("\n");
  assert.equal(lines.length, 3, `${what}: not one line + Try: ${JSON.stringify(r.err)}`);
  assert.match(lines[0], message, what);
  assert.match(lines[1], /^Try 'onecopy (\w+ )?--help' for more information\.$/, what);
  assert.equal(lines[2], "", what);
}

Deno.test("messages: a control character in any value keeps the error on one line", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/f`, "data\n");
  // [command line, exit code, the message with the value escaped]
  const cases: [string, number, RegExp][] = [
    [`onecopy send f --to o --method $'x\\ny'`, 2, /^onecopy: unknown method "x\\ny" \(use /],
    [`onecopy send f --to o --checksum $'x\\ny'`, 2, /^onecopy: unknown checksum "x\\ny" \(use /],
    [
      `onecopy send f --to o --connect-timeout $'1\\nx'`,
      2,
      /^onecopy: --connect-timeout wants a number of seconds above 0, not "1\\nx"$/,
    ],
    [
      `onecopy recv --listen tcp://127.0.0.1:0 --connections $'1\\nx'`,
      2,
      /^onecopy: --connections wants a whole number from 1 up, not "1\\nx"$/,
    ],
    [
      `onecopy tee --output-error=$'x\\ny' < /dev/null`,
      1,
      /^onecopy: invalid argument "x\\ny" for '--output-error' \(valid: /,
    ],
    [`onecopy $'bo\\ngus'`, 2, /^onecopy: unknown command "bo\\ngus"$/],
    [`onecopy help $'te\\ne'`, 2, /^onecopy: no help for "te\\ne" /],
    [`onecopy send f $'--x\\ny'`, 2, /^onecopy: unrecognized option "--x\\ny"$/],
    [`onecopy tee $'-\\x01' < /dev/null`, 1, /^onecopy: invalid option -- "\\u0001"$/],
    [`onecopy recv --listen l $'st\\nray'`, 2, /^onecopy: unexpected argument "st\\nray"$/],
    [
      `onecopy send f --to $'tcp://h\\nx:9'`,
      2,
      /^onecopy: "tcp:\/\/h\\nx:9": expected tcp:\/\/HOST:PORT with a port from 1 to 65535$/,
    ],
    [
      `onecopy send f --to $'tcp://[fe80::1%no\\nx]:9'`,
      2,
      /^onecopy: "tcp:\/\/\[fe80::1%no\\nx\]:9": expected tcp:\/\/HOST:PORT/,
    ],
    [
      `onecopy send f --to $'foo://a\\nb'`,
      2,
      /^onecopy: "foo:\/\/a\\nb": unsupported address \(use a path/,
    ],
  ];
  await Promise.all(cases.map(async ([line, code, message]) => {
    assertUsage(await sh(line, dir.path), code, message, line);
  }));
  // Not a usage error: a unix socket path is any path; the failure names it on one line.
  const unix = await sh(`onecopy send f --to $'unix:/no/such\\e' --to ok`, dir.path);
  assert.equal(unix.code, 1);
  assert.match(unix.err, /^onecopy: "unix:\/no\/such\\u001b": no such file or directory[^\n]*\n$/);
  // A tee operand is a file whatever it looks like; one that cannot be opened fails alone, in one line.
  const tee = await sh(`echo hi | onecopy tee $'tcp://h\\nx:9' ok`, dir.path);
  assert.equal(tee.code, 1);
  assert.equal(tee.out, "hi\n");
  assert.match(tee.err, /^onecopy: "tcp:\/\/h\\nx:9": No such file or directory\n$/);
  assert.equal(Deno.readTextFileSync(`${dir.path}/ok`), "hi\n");
});

Deno.test("usage errors: exit 2 (1 for tee), one line and the Try line, before anything is touched", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/f`, "data\n");
  const cases: [string, number, RegExp][] = [
    ["onecopy send '' --to x", 2, /^onecopy: empty path$/],
    ["onecopy send f --to ''", 2, /^onecopy: empty path$/],
    ["onecopy send f --to - --to -", 2, /^onecopy: --to - \(stdout\) is given twice/],
    ["onecopy send f --to tcp://127.0.0.1:0", 2, /port from 1 to 65535/],
    ["onecopy recv --listen tcp://127.0.0.1:99999", 2, /port from 0 to 65535$/],
    ["onecopy recv --listen unix:", 2, /^onecopy: unix:: a unix socket needs a path/],
    [
      "onecopy recv --listen somefile",
      2,
      /^onecopy: --listen wants tcp:\/\/HOST:PORT or unix:PATH/,
    ],
    ["onecopy recv --listen tcp://127.0.0.1:0 --connections 0", 2, /--connections wants/],
    ["onecopy constructor", 2, /^onecopy: unknown command 'constructor'$/],
    ["onecopy toString x", 2, /^onecopy: unknown command 'toString'$/],
    ["onecopy help constructor", 2, /^onecopy: no help for 'constructor'/],
    ["onecopy send", 2, /^onecopy: send needs an input/],
    ["onecopy send f g --to x", 2, /^onecopy: send takes one input/],
    ["onecopy send f --to x --method", 2, /^onecopy: option '--method' requires an argument$/],
    ["onecopy send f --to x --json=1", 2, /^onecopy: option '--json' doesn't allow an argument$/],
    ["onecopy recv", 2, /^onecopy: recv needs --listen/],
    ["onecopy tee --bogus < /dev/null", 1, /^onecopy: unrecognized option '--bogus'$/],
    ["onecopy tee -z < /dev/null", 1, /^onecopy: invalid option -- 'z'$/],
    ["onecopy tee --output-error=x < /dev/null", 1, /^onecopy: invalid argument 'x' for/],
    ["onecopy tee --checksum md4 < /dev/null", 1, /^onecopy: unknown checksum 'md4'/],
    ["onecopy tee --method fast < /dev/null", 1, /^onecopy: unknown method 'fast'/],
    ["onecopy tee --append=1 < /dev/null", 1, /doesn't allow an argument$/],
  ];
  await Promise.all(cases.map(async ([line, code, message]) => {
    assertUsage(await sh(line, dir.path), code, message, line);
  }));
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["f"], "nothing created");
});

Deno.test("send --checksum: the line sha256sum prints, escapes included, so sha256sum -c checks it", async () => {
  using dir = tempDir();
  const names = ["a\nb", "a\\b", "a\rb", "plain name"];
  for (const [i, name] of names.entries()) {
    Deno.writeTextFileSync(`${dir.path}/${name}`, `content ${i}\n`);
  }
  await Promise.all(names.map(async (name, i) => {
    const quoted = `$'${name.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\r/g, "\\r")}'`;
    const r = await sh(`onecopy send ${quoted} --to out${i} --checksum sha256`, dir.path);
    assert.equal(r.code, 0, r.err);
    const gnu = await sh(`sha256sum ${quoted}`, dir.path);
    assert.equal(r.out, gnu.out, JSON.stringify(name));
    Deno.writeTextFileSync(`${dir.path}/sum${i}`, r.out);
    const check = await sh(`sha256sum -c sum${i}`, dir.path);
    assert.equal(check.code, 0, `${JSON.stringify(name)}: ${check.out}${check.err}`);
  }));
  const stdin = await sh(`printf 'x\\n' | onecopy send - --to o --checksum sha256`, dir.path);
  assert.equal(stdin.out, (await sh(`printf 'x\\n' | sha256sum`)).out);
});

/** A Python client that sends 100 kB then closes with a reset (SO_LINGER 0). */
const resetClient = `
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"x" * 100000)
time.sleep(0.2)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
`;

Deno.test("recv --json: a reset connection is listed with its error (and exit 1)", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/reset.py`, resetClient);
  const r = await sh(
    `onecopy recv --listen tcp://127.0.0.1:0 --connections 2 --out got --json > report 2> err &
     pid=$!
     for i in $(seq 100); do grep -q listening err 2>/dev/null && break; sleep .1; done
     port=$(sed -n 's/.*:\\([0-9]*\\)$/\\1/p' err)
     python3 reset.py "$port"
     echo hello | onecopy send - --to "tcp://127.0.0.1:$port"
     wait $pid`,
    dir.path,
  );
  assert.equal(r.code, 1, Deno.readTextFileSync(`${dir.path}/err`));
  const report = JSON.parse(Deno.readTextFileSync(`${dir.path}/report`));
  assert.equal(report.connections.length, 2, JSON.stringify(report));
  const [reset, ok] = report.connections;
  assert.equal(reset.connection, 1);
  assert.match(reset.error, /connection reset by peer/);
  assert.equal(reset.checksum, undefined);
  assert.equal(ok.connection, 2);
  assert.equal(ok.bytes, 6);
  assert.equal(ok.error, undefined);
  assert.match(Deno.readTextFileSync(`${dir.path}/err`), /^onecopy: connection 1: .*reset/m);
});

Deno.test("--help is an option, not a word anywhere: send f --to -h sends to a file named -h", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/f`, "data\n");
  const r = await sh("onecopy send f --to -h", dir.path);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, "");
  assert.equal(Deno.readTextFileSync(`${dir.path}/-h`), "data\n");
  Deno.writeTextFileSync(`${dir.path}/-h`, "minus h\n");
  const quoted = await sh("onecopy send --to out -- -h", dir.path);
  assert.equal(quoted.code, 0, quoted.err);
  assert.equal(Deno.readTextFileSync(`${dir.path}/out`), "minus h\n");
  for (const line of ["onecopy send -h", "onecopy send f --he", "onecopy recv -h"]) {
    const help = await sh(line, dir.path);
    assert.equal(help.code, 0, line);
    assert.match(help.out, /^Usage: onecopy (send|recv) /, line);
  }
});

Deno.test("a link-local IPv6 address without a zone: said so, naming the address (not a bare EINVAL)", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/f`, "data\n");
  const recv = await sh("onecopy recv --listen 'tcp://[fe80::1]:0'", dir.path);
  assert.equal(recv.code, 1);
  assert.equal(
    recv.err,
    "onecopy: tcp://[fe80::1]:0: fe80::1 is link-local: give its interface as a zone, as [fe80::1%eth0]\n",
  );
  const send = await sh("onecopy send f --to 'tcp://[fe80::1]:9' --to ok", dir.path);
  assert.equal(send.code, 1);
  assert.match(send.err, /^onecopy: tcp:\/\/\[fe80::1\]:9: fe80::1 is link-local: [^\n]*\n$/);
  assert.equal(Deno.readTextFileSync(`${dir.path}/ok`), "data\n");
});

Deno.test("--json: no checksum for a source that failed part way (as the plain output prints none)", async () => {
  using dir = tempDir();
  // /proc/self/mem fails its first read (EIO: nothing is mapped at offset 0).
  const send = await sh("onecopy send /proc/self/mem --to a --json --checksum xxh64", dir.path);
  assert.equal(send.code, 1);
  const report = JSON.parse(send.out);
  assert.match(report.error, /EIO/);
  assert.equal(report.checksum, undefined);
  const tee = await sh("onecopy tee --json --checksum sha256 < .", dir.path);
  assert.equal(tee.code, 1);
  const teeReport = JSON.parse(tee.err.split("\n").find((l) => l.startsWith("{"))!);
  assert.match(teeReport.error, /EISDIR/);
  assert.equal(teeReport.checksum, undefined);
  const ok = await sh("echo x | onecopy send - --to b --json --checksum xxh64", dir.path);
  assert.equal(JSON.parse(ok.out).checksum.algorithm, "xxh64");
});

Deno.test("a stdout that fails (help, version, a checksum line into /dev/full): write error, exit 1", async () => {
  using dir = tempDir();
  for (const line of ["onecopy --version", "onecopy send --help", "onecopy help recv"]) {
    const r = await sh(`${line} > /dev/full`, dir.path);
    assert.equal(r.code, 1, line);
    assert.equal(r.err, "onecopy: write error: No space left on device\n", line);
  }
  const sum = await sh("echo x | onecopy send - --to o --checksum sha256 > /dev/full", dir.path);
  assert.equal(sum.code, 1);
  assert.equal(sum.err, "onecopy: write error: No space left on device\n");
  assert.equal(Deno.readTextFileSync(`${dir.path}/o`), "x\n");
});
