/**
 * `onecopy tee` as a drop-in for GNU tee (coreutils 9.2+), black-box through
 * the CLI. The cases follow what coreutils' tests/tee/*.sh and the tee lines
 * of tests/misc/*.sh check, plus the tee cases of uutils, busybox, toybox,
 * FreeBSD and the POSIX text; written here from what they check.
 */

import assert from "node:assert/strict";
import { sh, tempDir } from "./helpers.ts";

const lines = (text: string) => text.split("\n").filter((l) => l !== "").length;
/** The terminal escape that starts the progress line's erase-line sequence (no control characters in regex literals). */
const ESC = "\x1b";

Deno.test("tee: stdin to stdout and 0, 1, 2, 12, 13 files (POSIX: at least 13)", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/sample`, "line\n");
  for (const n of [0, 1, 2, 12, 13]) {
    const r = await sh(`rm -f [0-9]*; onecopy tee $(seq ${n}) < sample`, dir.path);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "line\n");
    assert.equal(r.err, "");
    for (let i = 1; i <= n; i++) assert.equal(Deno.readTextFileSync(`${dir.path}/${i}`), "line\n");
  }
});

Deno.test("tee: '-' is a file named '-' (POSIX), not stdout a second time", async () => {
  using dir = tempDir();
  const r = await sh(`echo line | onecopy tee -`, dir.path);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, "line\n");
  assert.equal(Deno.readTextFileSync(`${dir.path}/-`), "line\n");
  const after = await sh(`echo two | onecopy tee -a -- - -`, dir.path);
  assert.equal(after.out, "two\n");
  assert.equal(Deno.readTextFileSync(`${dir.path}/-`), "line\ntwo\ntwo\n");
});

Deno.test("tee -a / --append: appends; once is enough, repeating it changes nothing", async () => {
  using dir = tempDir();
  for (const opt of ["-a", "--append"]) {
    const files = Array.from({ length: 13 }, (_, i) => `${opt.length}f${i}`);
    const first = await sh(`echo 'line 1' | onecopy tee ${files.join(" ")}`, dir.path);
    assert.equal(first.out, "line 1\n");
    const opts = files.map((f) => `${opt} ${f}`).join(" ");
    const second = await sh(`echo 'line 2' | onecopy tee ${opts}`, dir.path);
    assert.equal(second.code, 0, second.err);
    assert.equal(second.out, "line 2\n");
    for (const f of files) {
      assert.equal(Deno.readTextFileSync(`${dir.path}/${f}`), "line 1\nline 2\n");
    }
  }
});

Deno.test("tee: sees EOF after a pause, and passes bytes on at once (no buffering)", async () => {
  using dir = tempDir();
  const eof = await sh(`(echo 1; sleep .1; echo 2) | onecopy tee`, dir.path);
  assert.equal(eof.out, "1\n2\n");
  // The writer keeps the pipe open until 'out' has the byte (or 10 s pass).
  const r = await sh(
    `{ printf a; for i in $(seq 100); do test -s out && exit 0; sleep .1; done; echo stuck >&2; } |
     onecopy tee > out`,
    dir.path,
  );
  assert.equal(r.err, "");
  assert.equal(Deno.readTextFileSync(`${dir.path}/out`), "a");
});

Deno.test("tee: a failing output is reported and dropped; the others get every byte", async () => {
  using dir = tempDir();
  await sh("seq 10000 > multi", dir.path);
  const multi = Deno.readTextFileSync(`${dir.path}/multi`);
  // Every output fails: both reported, and tee stops reading (yes never ends).
  const all = await sh(`yes | timeout 10 onecopy tee /dev/full > /dev/full`, dir.path);
  assert.equal(all.code, 1);
  assert.equal(lines(all.err), 2, all.err);
  assert.match(all.err, /^onecopy: \/dev\/full: No space left on device$/m);
  assert.match(all.err, /^onecopy: standard output: No space left on device$/m);
  const file = await sh(`onecopy tee /dev/full out2 > out1 < multi`, dir.path);
  assert.equal(file.code, 1);
  assert.equal(lines(file.err), 1, file.err);
  const stdout = await sh(`onecopy tee out1 out2 > /dev/full < multi`, dir.path);
  assert.equal(stdout.code, 1);
  assert.equal(stdout.err, "onecopy: standard output: No space left on device\n");
  for (const f of ["out1", "out2"]) assert.equal(Deno.readTextFileSync(`${dir.path}/${f}`), multi);
  // An operand that cannot be opened (a directory, a missing directory).
  Deno.mkdirSync(`${dir.path}/out_dir`);
  const open = await sh(`echo data | onecopy tee out_dir ./e/noent ok`, dir.path);
  assert.equal(open.code, 1);
  assert.equal(open.out, "data\n");
  assert.match(open.err, /^onecopy: out_dir: Is a directory\nonecopy: \.\/e\/noent: No such file/);
  assert.equal(Deno.readTextFileSync(`${dir.path}/ok`), "data\n");
});

Deno.test("tee: the input failing, closed or a directory: one error, status 1", async () => {
  using dir = tempDir();
  const isDir = await sh(`onecopy tee out < .`, dir.path);
  assert.equal(isDir.code, 1);
  assert.equal(isDir.err, "onecopy: read error: Is a directory\n");
  const closedIn = await sh(`onecopy tee out <&-`, dir.path);
  assert.equal(closedIn.code, 1);
  assert.match(closedIn.err, /^onecopy: standard input: Bad file descriptor\n$/);
  assert.equal(Deno.readTextFileSync(`${dir.path}/out`), "", "files are opened (truncated) first");
  // A shell's own /dev/null is not a closed fd.
  const devNull = await sh(`onecopy tee out < /dev/null > /dev/null`, dir.path);
  assert.equal(devNull.code, 0, devNull.err);
  const closedOut = await sh(`echo x | onecopy tee out >&-`, dir.path);
  assert.equal(closedOut.code, 1);
  assert.equal(closedOut.err, "onecopy: standard output: Bad file descriptor\n");
  assert.equal(Deno.readTextFileSync(`${dir.path}/out`), "x\n", "the files still get the bytes");
  const nothing = await sh(`onecopy tee out >&- < /dev/null`, dir.path);
  assert.equal(nothing.code, 0, "nothing to write, nothing failed (as GNU)");
  const full = await sh(`echo foo | onecopy tee > /dev/full`, dir.path);
  assert.equal(full.code, 1);
  assert.match(full.err, /No space left on device/);
  const endless = await sh(`timeout 10 onecopy tee < /dev/zero > /dev/full`, dir.path);
  assert.equal(endless.code, 1, "stops when its only output fails");
});

Deno.test("tee: a broken pipe on any output ends it with 141, as SIGPIPE would", async () => {
  using dir = tempDir();
  const stdout = await sh(
    `yes | onecopy tee out | head -n1; echo "\${PIPESTATUS[1]}" >&2`,
    dir.path,
  );
  assert.equal(stdout.out, "y\n");
  assert.equal(stdout.err, "141\n", "quiet, status 141");
  const sub = await sh(
    `set -o pipefail; yes | onecopy tee >(head -c1 > /dev/null) > /dev/null`,
    dir.path,
  );
  assert.equal(sub.code, 141, sub.err);
  assert.equal(sub.err, "");
});

Deno.test("tee -p / --output-error modes (coreutils tee.sh, with a fifo read once)", async () => {
  using dir = tempDir();
  // A reader that takes one block and leaves; tee's stdout is that fifo.
  const fifo = (tee: string) =>
    `mkfifo fifo 2>/dev/null; timeout 10 dd count=1 if=fifo of=/dev/null status=none &
     yes | timeout 10 onecopy tee ${tee} > fifo; code=$?; wait; exit $code`;
  const cases: [string, number, number][] = [
    ["./e/noent", 141, 1], // default: the open error, then death by SIGPIPE
    ["-p", 0, 0], // EPIPE not diagnosed; every output gone: exit 0
    ["--output-error", 0, 0],
    ["--output-error=warn", 1, 1],
    ["--output-error=exit /dev/null", 1, 1], // exit at once on EPIPE too
    ["--output-error=exit ./e/noent", 1, 1], // exit at the failed open
    ["--output-error=exit-nopipe", 0, 0],
    ["--output-error=exit-nop", 0, 0],
    ["--output-error=warn- ", 0, 0],
  ];
  for (const [args, code, errors] of cases) {
    const r = await sh(fifo(args), dir.path);
    assert.equal(r.code, code, `${args}: ${r.err}`);
    assert.equal(lines(r.err), errors, `${args}: ${r.err}`);
  }
  // -p keeps writing the outputs that still have readers.
  const rest = await sh(
    `yes | head -c 3000000 | onecopy tee -p out | head -c1 > /dev/null; echo "\${PIPESTATUS[2]}"`,
    dir.path,
  );
  assert.equal(rest.out, "0\n", rest.err);
  assert.equal(Deno.statSync(`${dir.path}/out`).size, 3000000);
});

Deno.test("tee: a non-blocking stdout (a fifo another process set O_NONBLOCK on)", async () => {
  using dir = tempDir();
  const r = await sh(
    `mkfifo fifo; { sleep .1; timeout 10 dd of=got bs=64k status=none; } < fifo &
     dd count=20 bs=100K if=/dev/zero status=none |
       { dd count=0 oflag=nonblock status=none; timeout 10 onecopy tee; } > fifo
     code=$?; wait; exit $code`,
    dir.path,
  );
  assert.equal(r.code, 0, r.err);
  assert.equal(Deno.statSync(`${dir.path}/got`).size, 20 * 100 * 1024);
});

Deno.test("tee: options as getopt_long takes them", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/x`, "old\n");
  for (const [args, file] of [["-ai x", "x"], ["-ap x", "x"], ["-pa x", "x"], ["--app x", "x"]]) {
    const r = await sh(`echo new | onecopy tee ${args}`, dir.path);
    assert.equal(r.code, 0, `${args}: ${r.err}`);
    assert.match(Deno.readTextFileSync(`${dir.path}/${file}`), /new\n$/);
  }
  assert.equal(Deno.readTextFileSync(`${dir.path}/x`), "old\nnew\nnew\nnew\nnew\n");
  // Options after operands (GNU permutes), `--` ends them, POSIXLY_CORRECT stops at an operand.
  const after = await sh(`echo a | onecopy tee y -a -- --help -i`, dir.path);
  assert.equal(after.code, 0, after.err);
  assert.equal(Deno.readTextFileSync(`${dir.path}/--help`), "a\n");
  assert.equal(Deno.readTextFileSync(`${dir.path}/-i`), "a\n");
  const posix = await sh(`echo b | onecopy tee z -a`, dir.path, { POSIXLY_CORRECT: "1" });
  assert.equal(posix.code, 0, posix.err);
  assert.equal(Deno.readTextFileSync(`${dir.path}/-a`), "b\n");
  // A bare --output-error is warn-nopipe; its value is taken only after '='.
  const bare = await sh(`echo c | onecopy tee --output-error w`, dir.path);
  assert.equal(bare.code, 0, bare.err);
  assert.equal(Deno.readTextFileSync(`${dir.path}/w`), "c\n");
  // Usage errors: one line and a hint, status 1 (as GNU tee).
  const bad: [string, RegExp][] = [
    ["-x", /^onecopy: invalid option -- 'x'\n/],
    ["--definitely-invalid", /^onecopy: unrecognized option '--definitely-invalid'\n/],
    ["--append=1", /^onecopy: option '--append' doesn't allow an argument\n/],
    ["--output-error=e", /^onecopy: ambiguous argument 'e' for '--output-error'/],
    ["--output-error=", /^onecopy: ambiguous argument '' for '--output-error'/],
    ["--output-error=foo", /^onecopy: invalid argument 'foo' for '--output-error'/],
  ];
  for (const [args, message] of bad) {
    const r = await sh(`echo d | onecopy tee ${args} out`, dir.path);
    assert.equal(r.code, 1, args);
    assert.match(r.err, message, args);
    assert.match(r.err, /\nTry 'onecopy tee --help' for more information\.\n$/, args);
    assert.equal(r.out, "", args);
  }
});

Deno.test("tee --help, -h, --version, onecopy help tee", async () => {
  const help = await sh("onecopy tee --help");
  assert.equal(help.code, 0);
  assert.equal(help.err, "");
  assert.match(help.out, /^Usage: onecopy tee \[OPTION\]\.\.\. \[FILE\]\.\.\.\n/);
  for (const option of ["--append", "--ignore-interrupts", "--output-error", "warn-nopipe"]) {
    assert.ok(help.out.includes(option), option);
  }
  assert.equal((await sh("onecopy tee -h")).out, help.out);
  assert.equal((await sh("onecopy tee --he")).out, help.out);
  assert.equal((await sh("onecopy help tee")).out, help.out);
  const version = await sh("onecopy tee --version");
  assert.equal(version.code, 0);
  assert.match(version.out, /^tee \(onecopy\) \d+\.\d+\.\d+\n/);
  assert.match(version.out, /\nLicense /);
  assert.equal((await sh("onecopy help nosuch")).code, 2);
});

Deno.test("tee -i: SIGINT is ignored, every byte still arrives", async () => {
  using dir = tempDir();
  // bash gives background jobs SIGINT ignored; start tee through `env` with it restored? No need:
  // the signal is sent to tee's own pid after it is running.
  const r = await sh(
    `mkfifo in; onecopy tee -i out < in > /dev/null & pid=$!
     exec 3> in; echo one >&3; sleep .5; kill -INT $pid; sleep .2; echo two >&3; exec 3>&-
     wait $pid`,
    dir.path,
  );
  assert.equal(r.code, 0, r.err);
  assert.equal(Deno.readTextFileSync(`${dir.path}/out`), "one\ntwo\n");
  const plain = await sh(
    `mkfifo in2; onecopy tee out2 < in2 > /dev/null & pid=$!
     exec 3> in2; echo one >&3; sleep .5; kill -INT $pid; wait $pid; code=$?; exec 3>&-; exit $code`,
    dir.path,
  );
  assert.equal(plain.code, 130, plain.err);
});

Deno.test("tee --output-error=exit: an output that cannot be opened stops it before any byte", async () => {
  using dir = tempDir();
  const r = await sh(`echo data | onecopy tee --output-error=exit a ./e/noent b`, dir.path);
  assert.equal(r.code, 1);
  assert.equal(r.err, "onecopy: ./e/noent: No such file or directory\n");
  assert.equal(r.out, "");
  assert.equal(Deno.readTextFileSync(`${dir.path}/a`), "");
  assert.throws(() => Deno.statSync(`${dir.path}/b`));
});

Deno.test("tee --checksum: the line sha256sum prints, so sha256sum -c can check it", async () => {
  using dir = tempDir();
  const r = await sh(
    `seq 100000 | onecopy tee --checksum sha256 copy 2> sum > /dev/null`,
    dir.path,
  );
  assert.equal(r.code, 0, r.err);
  const expected = await sh(`seq 100000 | sha256sum`, dir.path);
  assert.equal(Deno.readTextFileSync(`${dir.path}/sum`), expected.out);
  const check = await sh(`seq 100000 | sha256sum -c sum`, dir.path);
  assert.equal(check.code, 0, check.out + check.err);
  for (const alg of ["xxh64", "xxh3", "crc32c"]) {
    const x = await sh(`seq 10 | onecopy tee --checksum ${alg} > /dev/null`, dir.path);
    assert.match(x.err, /^[0-9a-f]{8,16} {2}-\n$/, alg);
  }
});

Deno.test("tee -p: ends (status 0) once every output pipe lost its reader, while stdin idles", async () => {
  using dir = tempDir();
  // The input never ends by itself before 15 s: only tee exiting early (and
  // touching tee.exited) ends it; `timeout 10` kills a tee that waits.
  const r = await sh(
    `{ for i in $(seq 150); do test -f tee.exited && exit 0; sleep .1; done; } |
       { timeout 10 onecopy tee -p 2> err && touch tee.exited; } | :`,
    dir.path,
  );
  assert.equal(r.code, 0, r.err);
  assert.ok(Deno.statSync(`${dir.path}/tee.exited`).isFile, "tee -p did not exit early");
  assert.equal(Deno.readTextFileSync(`${dir.path}/err`), "");
  // Not without -p: GNU notices only at the next write, and an input that then
  // ends without a byte is a success.
  const plain = await sh(`(sleep .3) | onecopy tee out >(true)`, dir.path);
  assert.equal(plain.code, 0, plain.err);
  const empty = await sh(`printf '' | onecopy tee out >(true)`, dir.path);
  assert.equal(empty.code, 0, empty.err);
});

/** Runs a bash line with a terminal (a pty, through script(1)) as stdin, stdout and stderr. */
function inPty(line: string, cwd: string) {
  return sh(`script -qfec ${JSON.stringify(line)} /dev/null`, cwd);
}

Deno.test("tee --progress: moves with a pipe on stdin, % and ETA for a file, a summary at the end", async () => {
  using dir = tempDir();
  const pipe = await inPty(
    "{ head -c 1M /dev/zero; sleep .6; head -c 1M /dev/zero; } | onecopy tee --progress > /dev/null",
    dir.path,
  );
  assert.equal(pipe.code, 0, pipe.out);
  assert.match(
    pipe.out,
    new RegExp(String.raw`\r${ESC}\[K1\.00 MiB {2}[\d.]+ [KM]iB/s`),
    "progress while stdin is a pipe",
  );
  assert.match(
    pipe.out,
    new RegExp(String.raw`\r${ESC}\[K2\.00 MiB in [\d.]+s {2}[\d.]+ \w+/s\r?\n`),
    "the summary stays",
  );
  await sh("head -c 32M /dev/zero > big", dir.path);
  const file = await inPty("onecopy tee --progress < big | (sleep .5; cat > /dev/null)", dir.path);
  assert.equal(file.code, 0, file.out);
  assert.match(file.out, /\d+\.\d% {2}ETA \d+s/);
  assert.match(file.out, /32\.00 MiB in [\d.]+s/);
  // Without --progress, nothing of onecopy's own reaches the terminal.
  const quiet = await inPty("head -c 3M /dev/zero | onecopy tee > /dev/null", dir.path);
  assert.equal(quiet.out, "");
});

Deno.test("tee: the broken pipe is a death by SIGPIPE, as GNU tee's (a parent sees the signal)", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../cli/main.ts", import.meta.url).pathname, "tee"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.getReader();
  await writer.write(new Uint8Array(4096));
  await reader.read();
  await reader.cancel(); // closes our read end of tee's stdout
  // Bytes keep coming until tee is gone (then the write fails: EPIPE for us).
  for (let i = 0; i < 1000; i++) {
    if (!(await writer.write(new Uint8Array(65536)).then(() => true, () => false))) break;
  }
  const status = await child.status;
  await writer.close().catch(() => {});
  const err = await new Response(child.stderr).text();
  assert.equal(status.signal, "SIGPIPE", `code ${status.code}: ${err}`);
  assert.equal(err, "");
});

Deno.test("tee: an output that is stdin's own file: refused with -a (named, exit 1), as GNU without", async () => {
  using dir = tempDir();
  const data = "0123456789\n".repeat(10_000);
  const reset = () => Deno.writeTextFileSync(`${dir.path}/f`, data);
  const read = (name: string) => Deno.readTextFileSync(`${dir.path}/${name}`);
  reset();
  // -a: GNU's would append f to itself for ever; onecopy refuses f, the others get every byte.
  const append = await sh(`onecopy tee -a f h < f > so`, dir.path);
  assert.equal(append.code, 1);
  assert.match(
    append.err,
    /^onecopy: f: is the source file; [^\n]*\(input file is output file\)\n$/,
  );
  assert.equal(read("f"), data, "f untouched");
  assert.equal(read("h"), data);
  assert.equal(read("so"), data);
  const onStdout = await sh(`onecopy tee h2 < f >> f`, dir.path);
  assert.equal(onStdout.code, 1);
  assert.match(onStdout.err, /^onecopy: standard output: is the source file; [^\n]*\n$/);
  assert.equal(read("f"), data);
  assert.equal(read("h2"), data);
  // --output-error=exit: that refusal ends tee before any byte (h3 created, empty).
  const exit = await sh(`onecopy tee -a --output-error=exit f h3 < f > so3`, dir.path);
  assert.equal(exit.code, 1);
  assert.equal(exit.err.split("\n").length, 2, exit.err);
  assert.equal(read("f"), data);
  assert.equal(read("h3"), "");
  assert.equal(read("so3"), "");
  // Without -a, f has just been truncated: it holds all stdin has (nothing), exit 0 as GNU.
  for (const line of [`onecopy tee f h4 < f`, `onecopy tee h5 < f > f`]) {
    reset();
    const r = await sh(line, dir.path);
    assert.equal(r.code, 0, `${line}: ${r.err}`);
    assert.equal(r.err, "", line);
    assert.equal(read("f"), "", line);
  }
});
