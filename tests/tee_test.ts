/**
 * `onecopy tee` as a drop-in for GNU tee (coreutils 9.2+), black-box through
 * the CLI. The cases follow what coreutils' tests/tee/*.sh and the tee lines
 * of tests/misc/*.sh check, plus the tee cases of uutils, busybox, toybox,
 * FreeBSD and the POSIX text; written here from what they check.
 */

import assert from "node:assert/strict";
import { type Run, sh, tempDir } from "./helpers.ts";

const cliMain = new URL("../cli/main.ts", import.meta.url).pathname;
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
    // GNU tee has no -h, and rejects prefixes of options it does not have.
    ["-h", /^onecopy: invalid option -- 'h'\n/],
    ["--p", /^onecopy: unrecognized option '--p'\n/],
    ["--js", /^onecopy: unrecognized option '--js'\n/],
    ["--check=sha256", /^onecopy: unrecognized option '--check'\n/],
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

Deno.test("tee --help, --version, onecopy help tee", async () => {
  const help = await sh("onecopy tee --help");
  assert.equal(help.code, 0);
  assert.equal(help.err, "");
  // GNU's first line, as a drop-in aliased to tee should print it.
  assert.match(help.out, /^Usage: tee \[OPTION\]\.\.\. \[FILE\]\.\.\.\n/);
  for (const option of ["--append", "--ignore-interrupts", "--output-error", "warn-nopipe"]) {
    assert.ok(help.out.includes(option), option);
  }
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

// ---------------------------------------------------------------------------
// Further cases ported from coreutils (tests/tee/*.sh, tests/misc/tee-dash.sh,
// the tee line of tests/misc/write-errors.sh), uutils test_tee.rs, busybox,
// toybox, FreeBSD and the POSIX text; independent cases run side by side.

/** One black-box case: a bash line run in its own directory, then checks. */
interface Case {
  name: string;
  line: string;
  /** Files to create first. */
  files?: Record<string, string | Uint8Array>;
  check(r: Run, file: (name: string) => string, dir: string): void;
}

/** Runs `cases`, at most `limit` at a time, each in a fresh directory; names the failing one. */
async function runCases(cases: Case[], limit = 4): Promise<void> {
  const queue = [...cases];
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      using dir = tempDir();
      for (const [name, data] of Object.entries(c.files ?? {})) {
        if (typeof data === "string") Deno.writeTextFileSync(`${dir.path}/${name}`, data);
        else Deno.writeFileSync(`${dir.path}/${name}`, data);
      }
      const r = await sh(c.line, dir.path);
      const file = (name: string) => Deno.readTextFileSync(`${dir.path}/${name}`);
      try {
        c.check(r, file, dir.path);
      } catch (e) {
        throw new Error(`case ${c.name} (${c.line}): code ${r.code}, err ${r.err}`, { cause: e });
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

const seq = (n: number) => Array.from({ length: n }, (_, i) => `${i + 1}\n`).join("");
const exists = (path: string) => {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
};

Deno.test("tee: files and devices (FreeBSD, toybox, busybox, POSIX)", async () => {
  const bytes = new Uint8Array(1024).map((_, i) => i % 256); // every byte value, no newline
  await runCases([
    {
      name: "device-stderr",
      line: "echo text | onecopy tee /dev/stderr",
      check: (
        r,
      ) => (assert.equal(r.code, 0), assert.equal(r.out, "text\n"), assert.equal(r.err, "text\n")),
    },
    {
      name: "device-stdout",
      line: "echo text | onecopy tee /dev/stdout | cat",
      check: (r) => (assert.equal(r.code, 0), assert.equal(r.out, "text\ntext\n")),
    },
    {
      name: "toybox-cmp",
      line: "printf three | onecopy tee one > two && cmp one two && echo that",
      check: (r) => assert.equal(r.out, "that\n"),
    },
    {
      name: "busybox-tees",
      line: `echo "i'm a little teapot" > foo; echo "i'm a little teapot" | onecopy tee bar > baz;
             cmp foo bar && cmp foo baz`,
      check: (r) => (assert.equal(r.code, 0), assert.equal(r.err, "")),
    },
    {
      name: "busybox-append",
      line:
        "echo t > foo; cp foo bar; echo t >> foo; echo t | onecopy tee -a bar > /dev/null; cmp foo bar",
      check: (r) => (assert.equal(r.code, 0), assert.equal(r.err, "")),
    },
    {
      name: "truncate-rerun",
      files: { file: "old content that is longer\n" },
      line: "echo text | onecopy tee file > /dev/null",
      check: (r, file) => (assert.equal(r.code, 0), assert.equal(file("file"), "text\n")),
    },
    {
      name: "append-create",
      line: "echo x | onecopy tee -a newfile",
      check: (r, file) => (assert.equal(r.code, 0), assert.equal(file("newfile"), "x\n")),
    },
    {
      name: "uu-multi-append",
      files: { log1: "existing1\n", log2: "existing2\n" },
      line: `printf "don't fail me now" | onecopy tee -a log1 -a log2`,
      check: (r, file) => {
        assert.equal(r.out, "don't fail me now");
        assert.equal(file("log1"), "existing1\ndon't fail me now");
        assert.equal(file("log2"), "existing2\ndon't fail me now");
      },
    },
    {
      name: "binary (file and pipe)",
      files: { bin: bytes },
      line:
        "onecopy tee f < bin | cmp - bin && cat bin | onecopy tee g | cmp - bin && cmp f bin && cmp g bin",
      check: (r) => (assert.equal(r.code, 0, r.out), assert.equal(r.err, "")),
    },
    {
      name: "dash-devnull (tests/misc/tee-dash.sh)",
      line: "onecopy tee - < /dev/null",
      check: (
        r,
        file,
      ) => (assert.equal(r.code, 0), assert.equal(r.out, ""), assert.equal(file("-"), "")),
    },
    {
      name: "empty input creates and truncates",
      files: { b: "old content\n" },
      line: "onecopy tee a b < /dev/null && true | onecopy tee c",
      check: (r, file) => {
        assert.equal(r.code, 0);
        for (const f of ["a", "b", "c"]) assert.equal(file(f), "", f);
      },
    },
    {
      name: "empty input with -a keeps",
      files: { b: "old\n" },
      line: "onecopy tee -a b < /dev/null",
      check: (r, file) => (assert.equal(r.code, 0), assert.equal(file("b"), "old\n")),
    },
    {
      name: "every operand is a file (POSIX): unix:log and a tcp:// name too",
      line: "mkdir tcp:; echo x | onecopy tee unix:log tcp://h:1",
      check: (r, file) => (
        assert.equal(r.code, 0, r.err),
          assert.equal(file("unix:log"), "x\n"),
          assert.equal(file("tcp:/h:1"), "x\n")
      ),
    },
    {
      name: "big-pipe-stdin with fifo consumers",
      line: `head -c 10M /dev/urandom > big; mkfifo f1 f2; cat f1 > c1 & sha256sum < f2 > h2 &
             cat big | onecopy tee o1 f1 f2 | cat > so; status=\${PIPESTATUS[1]}; wait
             cmp big so && cmp big o1 && cmp big c1 && test "$(sha256sum < big)" = "$(cat h2)" || exit 9
             exit $status`,
      check: (r) => (assert.equal(r.code, 0), assert.equal(r.err, "")),
    },
  ]);
});

Deno.test("tee: option forms and what they must not do (getopt_long, argmatch)", async () => {
  await runCases([
    {
      name: "help-no-files",
      line: "onecopy tee --help f > /dev/null < /dev/null && onecopy tee --version g > /dev/null",
      check: (r, _, dir) => {
        assert.equal(r.code, 0);
        assert.ok(!exists(`${dir}/f`) && !exists(`${dir}/g`), "a file was created");
      },
    },
    {
      name: "oe-prefix-long (--output=exit)",
      line: "echo x | onecopy tee --output=exit f",
      check: (r, file) => (assert.equal(r.code, 0, r.err), assert.equal(file("f"), "x\n")),
    },
    {
      name: "invalid-short creates nothing",
      line: "echo hi | onecopy tee -x f",
      check: (r, _, dir) => (assert.equal(r.code, 1), assert.ok(!exists(`${dir}/f`))),
    },
    {
      name: "oe-ambiguous creates nothing",
      line: "echo x | onecopy tee --output-error=e f",
      check: (r, _, dir) => (assert.equal(r.code, 1), assert.ok(!exists(`${dir}/f`))),
    },
    {
      name: "permute: tee out -a appends, creates no -a",
      files: { out: "x\n" },
      line: "echo y | onecopy tee out -a",
      check: (r, file, dir) => {
        assert.equal(r.code, 0);
        assert.equal(file("out"), "x\ny\n");
        assert.ok(!exists(`${dir}/-a`));
      },
    },
    {
      name: "ddash-dash: -a -- - appends to the file -",
      files: { "-": "old\n" },
      line: "echo x | onecopy tee -a -- -",
      check: (r, file) => (assert.equal(r.code, 0), assert.equal(file("-"), "old\nx\n")),
    },
    {
      name: "grouped-pa on a plain run",
      files: { f: "pre\n" },
      line: "echo x | onecopy tee -pa f",
      check: (r, file) => {
        assert.equal(r.code, 0);
        assert.equal(r.err, "");
        assert.equal(file("f"), "pre\nx\n");
      },
    },
  ]);
});

Deno.test("tee: output errors, --output-error=warn/exit, /dev/full (coreutils, uutils)", async () => {
  const big = seq(2_000_000); // 14.9 MB: an early stop shows whatever the chunk size
  const uu = seq(100_000);
  const isShortPrefix = (got: string, full: string) =>
    assert.ok(got.length < full.length && full.startsWith(got), `${got.length} of ${full.length}`);
  await runCases([
    {
      name: "full-small (uutils no_more_writeable_1)",
      line: "seq 10 | onecopy tee /dev/full out",
      check: (r, file) => {
        assert.equal(r.code, 1);
        assert.equal(lines(r.err), 1);
        assert.equal(r.out, seq(10));
        assert.equal(file("out"), seq(10));
      },
    },
    {
      name: "we-full: tee </dev/zero >/dev/full diagnosed once, promptly",
      line: "timeout 10 sh -c 'onecopy tee < /dev/zero 2> full.err > /dev/full'",
      check: (r, file) => (assert.equal(r.code, 1), assert.equal(lines(file("full.err")), 1)),
    },
    {
      name: "we-closed: tee </dev/zero >&- diagnosed (EBADF), not run for ever",
      line: "timeout 10 sh -c 'onecopy tee < /dev/zero 2> closed.err >&-'",
      check: (r, file) => {
        assert.equal(r.code, 1);
        assert.equal(file("closed.err"), "onecopy: standard output: Bad file descriptor\n");
      },
    },
    {
      name:
        "closed-exit-empty: --output-error=exit, stdout closed, empty stdin: exit 0 (GNU reads first)",
      line: "sh -c ': | onecopy tee --output-error=exit 2> ee.err >&-'",
      check: (r, file) => {
        assert.equal(r.code, 0);
        assert.equal(file("ee.err"), "");
      },
    },
    {
      name: "closed-first-read: stdout closed, the first read takes GNU's 8 KiB of a shared stdin",
      line: "seq 30000 > seqf; { onecopy tee 2> fr.err >&-; cat; } < seqf | wc -c",
      check: (r, file) => {
        assert.equal(r.out.trim(), String(168894 - 8192));
        assert.equal(file("fr.err").split("\n").length - 1, 1);
      },
    },
    {
      name: "closed-read-error: stdout closed, stdin a directory: the read error, not EBADF",
      line: "onecopy tee < / >&-",
      check: (r) => {
        assert.equal(r.code, 1);
        assert.match(r.err, /^onecopy: read error: /);
        assert.equal(r.err.split("\n").length - 1, 1);
      },
    },
    {
      name:
        "closed-help: --help and --version into a closed stdout: write error, exit 1 (close_stdout)",
      line: "onecopy tee --help >&- 2> h.err; echo $?; onecopy tee --version >&-",
      check: (r, file) => {
        assert.equal(r.out, "1\n");
        assert.equal(r.code, 1);
        assert.match(file("h.err"), /write error: Bad file descriptor/);
      },
    },
    {
      name:
        "closed-dev-stdout: /dev/stdout, /dev/fd/1 of a closed stdout do not open (ENOENT, as GNU)",
      line: "echo hi | onecopy tee /dev/stdout /dev/fd/1 >&-",
      check: (r) => {
        assert.equal(r.code, 1);
        assert.equal(r.err.split("\n").length - 1, 3, r.err);
        assert.match(r.err, /\/dev\/stdout: No such file or directory/);
      },
    },
    {
      name:
        "closed-then-sigint: stdout closed, files written, SIGINT: EBADF was said at the first write",
      line:
        "(echo y; sleep 6) | timeout --preserve-status -s INT 3 onecopy tee f1 2> si.err >&-; echo $?",
      check: (r, file) => {
        assert.equal(r.out, "130\n");
        assert.match(file("si.err"), /^onecopy: standard output: Bad file descriptor\n$/);
        assert.equal(file("f1"), "y\n");
      },
    },
    {
      name: "we-closed-empty: tee </dev/null >&- has nothing to write: exit 0, as GNU",
      line: "sh -c 'onecopy tee < /dev/null 2> empty.err >&-'",
      check: (r, file) => {
        assert.equal(r.code, 0);
        assert.equal(file("empty.err"), "");
      },
    },
    {
      name: "we-pipe: tee </dev/zero | : ends quietly",
      line: "timeout 10 sh -c 'onecopy tee < /dev/zero 2> pipe.err | :'",
      check: (r, file) => (assert.equal(r.code, 0), assert.equal(file("pipe.err"), "")),
    },
    {
      name: "io-errors.sh: --version, --help and copying into /dev/full are diagnosed",
      files: { foo: "foo\n" },
      line: `for args in --version --help '' ; do
               timeout 10 sh -c "onecopy tee $args < foo 2> full.err > /dev/full"; echo "$? $(cat full.err)"
             done`,
      check: (r) => {
        const [version, help, copy] = r.out.trimEnd().split("\n");
        assert.equal(version, "1 onecopy: write error: No space left on device");
        assert.equal(help, "1 onecopy: write error: No space left on device");
        assert.equal(copy, "1 onecopy: standard output: No space left on device");
      },
    },
    {
      name: "io-errors.sh: into a closed pipe: quiet (tee < foo | :, --version | :)",
      files: { foo: "foo\n" },
      line: `timeout 10 sh -c 'onecopy tee < foo 2> pipe.err | :' && test ! -s pipe.err &&
             timeout 10 sh -c 'onecopy tee --help 2> pipe.err | (exec 0<&-; sleep .2)' && test ! -s pipe.err`,
      check: (r) => (assert.equal(r.code, 0, r.err), assert.equal(r.err, "")),
    },
    {
      name: "responsive.sh: a line from a FIFO held open reaches the output at once",
      line: `mkfifo in hold; onecopy tee < in > out & reader=$!
             { printf '1\\n'; read x < hold || :; } > in & writer=$!
             for i in $(seq 60); do test -s out && break; sleep .1; done
             test -s out; got=$?; printf release > hold; wait $writer; wait $reader; exit $got`,
      check: (
        r,
        file,
      ) => (assert.equal(r.code, 0, "no output while stdin stayed open"),
        assert.equal(file("out"), "1\n")),
    },
    {
      name: "p-open-fail (9.2 crash fix)",
      line: "onecopy tee -p ./e/noent < /dev/null",
      check: (r) => (assert.equal(r.code, 1), assert.equal(lines(r.err), 1)),
    },
    {
      name: "oe-warn-open: the others still written",
      line: "seq 10 | onecopy tee --output-error=warn a ./e/noent b",
      check: (r, file) => {
        assert.equal(r.code, 1);
        assert.equal(lines(r.err), 1);
        for (const out of [r.out, file("a"), file("b")]) assert.equal(out, seq(10));
      },
    },
    {
      name: "oe-exit-full: stops at the first failure (uutils space_error_exit)",
      line: "seq 2000000 | onecopy tee --output-error=exit out /dev/full > so",
      check: (r, file) => {
        assert.equal(r.code, 1);
        assert.equal(lines(r.err), 1);
        isShortPrefix(file("out"), big);
        isShortPrefix(file("so"), big);
      },
    },
    {
      name: "oe-warn-full: reported, the others complete",
      line: "seq 100000 | onecopy tee --output-error=warn out /dev/full > so",
      check: (r, file) => {
        assert.equal(r.code, 1);
        assert.equal(lines(r.err), 1);
        assert.equal(file("out"), uu);
        assert.equal(file("so"), uu);
      },
    },
    {
      name: "sp-default: ENOSPC reported, out complete",
      line: "seq 100000 | onecopy tee out /dev/full > /dev/null",
      check: (r, file) => {
        assert.equal(r.code, 1);
        assert.equal(r.err, "onecopy: /dev/full: No space left on device\n");
        assert.equal(file("out"), uu);
      },
    },
    {
      name: "xfsz (documented): ulimit -f is EFBIG on each output, exit 1 (GNU dies: 153)",
      // 100 KiB: under 32 KiB Deno itself may die of SIGXFSZ at start-up (README).
      line: "onecopy --version > /dev/null; (ulimit -f 100; seq 100000 | onecopy tee big > so)",
      check: (r, file) => {
        assert.equal(r.code, 1);
        assert.match(r.err, /^onecopy: standard output: File too large$/m);
        assert.match(r.err, /^onecopy: big: File too large$/m);
        assert.equal(file("big"), uu.slice(0, 102400));
        assert.equal(file("so"), uu.slice(0, 102400));
      },
    },
  ]);
});

/**
 * Runs a command with stdout a pipe whose read end is already closed (uutils'
 * make_broken_pipe), SIGPIPE at its default; prints its status (-13: killed
 * by SIGPIPE). With --hang, stdin is a pipe nobody writes to, kept open.
 */
const brokenStdout = `
import os, subprocess, sys
hang = sys.argv[1] == "--hang"
args = sys.argv[2:] if hang else sys.argv[1:]
r, w = os.pipe()
os.close(r)
stdin = None
if hang:
    stdin, keep = os.pipe()
p = subprocess.Popen(args, stdin=stdin, stdout=w)
os.close(w)
if hang:
    os.close(stdin)
try:
    print(p.wait(timeout=10))
except subprocess.TimeoutExpired:
    p.kill()
    p.wait()
    print("timeout")
`;

Deno.test("tee: a broken stdout under each --output-error mode (uutils pipe/space errors)", async () => {
  const uu = seq(100_000);
  const big = seq(2_000_000);
  const broken = (args: string, input: string) =>
    `seq ${input === big ? 2000000 : 100000} > in; python3 broken.py onecopy tee ${args} < in`;
  const files = { "broken.py": brokenStdout };
  const expect =
    (status: string, errors: number, full: boolean, data = uu) =>
    (r: Run, file: (name: string) => string) => {
      assert.equal(r.out.trim(), status);
      assert.equal(lines(r.err), errors, r.err);
      const got = file("f");
      if (full) assert.equal(got.length, data.length);
      else assert.ok(got.length < data.length && data.startsWith(got), `${got.length} bytes`);
    };
  const cases: [string, string, number, boolean, string?][] = [
    ["f", "-13", 0, false], // bp-default: a silent death by SIGPIPE, f short
    ["-p f", "0", 0, true],
    ["--output-error f", "0", 0, true],
    ["--output-error=warn-nopipe f", "0", 0, true],
    ["--output-error=warn- f", "0", 0, true],
    ["--output-error=warn f", "1", 1, true],
    ["--output-error=exit f", "1", 1, false],
    ["--output-error=exit-nopipe f", "0", 0, true],
    ["--output-error=exit-nop f", "0", 0, true],
    ["-p f /dev/full", "1", 1, true], // sp-*: ENOSPC is reported in every mode
    ["--output-error f /dev/full", "1", 1, true],
    ["--output-error=warn-nopipe f /dev/full", "1", 1, true],
    ["--output-error=warn f /dev/full", "1", 2, true],
    ["--output-error=exit f /dev/full", "1", 1, false, big],
    ["--output-error=exit-nopipe f /dev/full", "1", 1, false, big],
  ];
  await runCases(cases.map(([args, status, errors, full, data]) => ({
    name: args,
    files,
    line: broken(args, data ?? uu),
    check: expect(status, errors, full, data ?? uu),
  })));
  await runCases(["-ap", "-pa"].map((opt) => ({
    name: `grouped ${opt}`,
    files: { ...files, f: "pre\n" },
    line: broken(`${opt} f`, uu),
    check: (r, file) => {
      assert.equal(r.out.trim(), "0");
      assert.equal(r.err, "");
      assert.equal(file("f"), `pre\n${uu}`);
    },
  })));
});

Deno.test("tee -p: exits at once once every output lost its reader, stdin idle (9.2 iopoll)", async () => {
  await runCases([
    {
      name: "p-idle-stdout: stdin an open, silent pipe",
      files: { "broken.py": brokenStdout },
      line: "python3 broken.py --hang onecopy tee -p",
      check: (r) => (assert.equal(r.out.trim(), "0"), assert.equal(r.err, "")),
    },
    {
      name: "p-idle-procsub: >(head -c1) and stdout both gone",
      line: `start=$(date +%s%N)
        (printf x; for i in $(seq 60); do [ -f done ] && break; sleep .1; done) |
          { timeout 8 onecopy tee -p >(head -c1 > /dev/null) 2> err; echo $? > rc; touch done; } | head -c1
        echo " $(( ($(date +%s%N) - start) / 1000000 ))"`,
      check: (r, file) => {
        const [x, ms] = r.out.split(" ");
        assert.equal(x, "x");
        assert.equal(file("rc"), "0\n");
        assert.equal(file("err"), "");
        assert.ok(Number(ms) < 3500, `${ms} ms: tee -p waited for its input`);
      },
    },
    {
      name: "p-procsub-full: a lost >(cmd) is dropped, the others complete, exit 0",
      line:
        "seq 1000000 > in; onecopy tee -p >(head -c1 > /dev/null) f < in > out && cmp in out && cmp in f",
      check: (r) => (assert.equal(r.code, 0), assert.equal(r.err, "")),
    },
    {
      name: "sigpipe-procsub: without -p, a lost >(cmd) is status 141, out a prefix",
      line: `seq 1000000 > in; onecopy tee >(head -c1 > /dev/null) < in > out; echo $?
             ! cmp -s out in && head -c "$(wc -c < out)" in | cmp - out`,
      check: (r) => {
        assert.equal(r.out, "141\n");
        assert.equal(r.code, 0, "out is not a strict prefix of the input");
        assert.equal(r.err, "");
      },
    },
  ]);
});

Deno.test("tee -i, --ignore-interrupts, --ignore-i, -ai: SIGINT ignored; without: it ends tee", async () => {
  // A FIFO as stdin: tee is reading it when the signal comes (FreeBSD sigint_ignored).
  const line = (opts: string) =>
    `mkfifo in; echo pre > out; onecopy tee ${opts} out < in > so & pid=$!
     exec 3> in; echo a >&3
     for i in $(seq 100); do test -s so && break; sleep .05; done
     sleep .2; kill -INT $pid; sleep .3; echo b >&3; exec 3>&-; wait $pid`;
  await runCases(
    ["-i", "--ignore-interrupts", "--ignore-i", "-ai"].map((opts) => ({
      name: opts,
      line: line(opts),
      check: (r, file) => {
        assert.equal(r.code, 0);
        assert.equal(r.err, "");
        assert.equal(file("so"), "a\nb\n");
        assert.equal(file("out"), opts === "-ai" ? "pre\na\nb\n" : "a\nb\n");
      },
    })),
  );
});

/**
 * Drives `onecopy tee ARGS` with stdin a terminal (a pty); prints "ok" or
 * what went wrong. Modes: lines (each line passes through at once), partial
 * (^D mid-line hands over what was typed), sigint and sigint-i (^C, with the
 * pty as the controlling terminal), idle-p (-p with stdout a broken pipe and
 * nothing typed: exits at once).
 */
const ptyDriver = `
import fcntl, os, signal, subprocess, sys, termios, threading, time
mode, args = sys.argv[1], sys.argv[2:]
m, s = os.openpty()
def ctty():
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
def wait_for(pred, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
def read_file(name):
    try:
        return open(name, "rb").read()
    except OSError:
        return b""
out = bytearray()
def drain(fd, into):
    while True:
        try:
            b = os.read(fd, 65536)
        except OSError:
            return
        if not b:
            return
        into += b
def fail(why):
    print(why)
    sys.exit(1)
if mode in ("lines", "partial"):
    p = subprocess.Popen(["onecopy", "tee"] + args, stdin=s, stdout=subprocess.PIPE)
    threading.Thread(target=drain, args=(p.stdout.fileno(), out), daemon=True).start()
    threading.Thread(target=drain, args=(m, bytearray()), daemon=True).start()
    first, second = (b"line1\\n", b"line2\\n") if mode == "lines" else (b"ab\\x04", b"cd\\n")
    want1 = first.replace(b"\\x04", b"")
    os.write(m, first)
    if not wait_for(lambda: bytes(out) == want1, 3): fail(f"first part not passed on: {bytes(out)!r}")
    if args and not wait_for(lambda: read_file(args[-1]) == want1, 2): fail("file late")
    time.sleep(0.2)
    os.write(m, second)
    if not wait_for(lambda: bytes(out) == want1 + second, 3): fail(f"second part: {bytes(out)!r}")
    os.write(m, b"\\x04")
elif mode in ("sigint", "sigint-i"):
    p = subprocess.Popen(["onecopy", "tee"] + args, stdin=s, stdout=s, preexec_fn=ctty)
    threading.Thread(target=drain, args=(m, bytearray()), daemon=True).start()
    os.write(m, b"text\\r")
    if not wait_for(lambda: read_file("file") == b"text\\n"): fail("first line not in file")
    os.write(m, b"\\x03")
    if mode == "sigint":
        try:
            rc = p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            fail("still running after ^C")
        print("ok" if rc in (-2, 130) else f"status {rc}")
        sys.exit(0)
    time.sleep(0.5)
    if p.poll() is not None: fail(f"ended on ^C: {p.poll()}")
    os.write(m, b"text\\r")
    if not wait_for(lambda: read_file("file") == b"text\\ntext\\n"): fail("second line not in file")
    os.write(m, b"\\x04")
elif mode == "idle-p":
    r, w = os.pipe()
    os.close(r)
    p = subprocess.Popen(["onecopy", "tee", "-p"], stdin=s, stdout=w)
    os.close(w)
try:
    rc = p.wait(timeout=4)
except subprocess.TimeoutExpired:
    p.kill()
    fail("did not end")
print("ok" if rc == 0 else f"status {rc}")
`;

Deno.test("tee on a terminal: unbuffered, ^D, ^C with and without -i, -p with an idle terminal", async () => {
  await runCases(
    [
      ["lines", "f"],
      ["partial", ""],
      ["sigint", "file"],
      ["sigint-i", "-i file"],
      ["idle-p", ""],
    ].map(([mode, args]) => ({
      name: `pty ${mode}`,
      files: { "pty.py": ptyDriver },
      line: `python3 pty.py ${mode} ${args}`,
      check: (r, file) => {
        assert.equal(r.out, "ok\n", r.err);
        if (mode === "lines") assert.equal(file("f"), "line1\nline2\n");
        if (mode === "sigint-i") assert.equal(file("file"), "text\ntext\n");
      },
    })),
  );
});

Deno.test("tee: a read-write /dev/null on stdin/stdout counts as closed (documented), and the workaround", async () => {
  using dir = tempDir();
  // What Python's subprocess.DEVNULL (O_RDWR) gives: the documented misfire.
  const run = (stdin: string, stdout: string) =>
    sh(
      `python3 -c 'import os, subprocess, sys
devnull = subprocess.DEVNULL
p = subprocess.run(["onecopy", "tee", "f"], input=${stdin}, stdout=${stdout})
sys.exit(p.returncode)'`,
      dir.path,
    );
  const rdwrOut = await run(`b"hi\\n"`, "devnull");
  assert.equal(rdwrOut.code, 1);
  assert.equal(rdwrOut.err, "onecopy: standard output: Bad file descriptor\n");
  assert.equal(Deno.readTextFileSync(`${dir.path}/f`), "hi\n", "the file still gets the bytes");
  // The workaround: /dev/null opened write-only (or read-only for stdin), as a shell does.
  const wronly = await run(`b"hi\\n"`, `open(os.devnull, "wb")`);
  assert.equal(wronly.code, 0, wronly.err);
  assert.equal(wronly.err, "");
  const rdonly = await sh(
    `python3 -c 'import os, subprocess, sys
sys.exit(subprocess.run(["onecopy", "tee", "f"], stdin=open(os.devnull, "rb")).returncode)'`,
    dir.path,
  );
  assert.equal(rdonly.code, 0, rdonly.err);
  const rdwrIn = await sh(`onecopy tee g 0<>/dev/null`, dir.path);
  assert.equal(rdwrIn.code, 1);
  assert.equal(rdwrIn.err, "onecopy: standard input: Bad file descriptor\n");
});

Deno.test("tee: a terminal on stdin that hangs up is GNU's read error (EIO, exit 1); ^D is a clean end", async () => {
  using dir = tempDir();
  const script = `
import os, pty, subprocess, sys, time
hang = sys.argv[1] == "hangup"
m, s = pty.openpty()
p = subprocess.Popen(sys.argv[2:], stdin=s, stdout=open("out", "w"), stderr=subprocess.PIPE)
os.close(s)
time.sleep(1.5)
os.write(m, b"hello\\n" if hang else b"hello\\n\\x04")
time.sleep(0.5)
if hang:
    os.close(m)
_, err = p.communicate(timeout=10)
print(p.returncode, err.decode().strip())
`;
  for (const how of ["hangup", "eof"]) {
    const out = await new Deno.Command("python3", {
      args: ["-c", script, how, Deno.execPath(), "run", "-A", cliMain, "tee", "copy"],
      cwd: dir.path,
      stdout: "piped",
    }).output();
    const said = new TextDecoder().decode(out.stdout).trim();
    if (how === "hangup") assert.equal(said, "1 onecopy: read error: Input/output error");
    else assert.equal(said, "0");
    assert.equal(Deno.readTextFileSync(`${dir.path}/copy`), "hello\n", how);
  }
});
