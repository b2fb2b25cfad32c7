/**
 * `deno task bench:mirror` (and the last part of `deno task bench:compare`):
 * `onecopy mirror` against a C relay (the limit), HAProxy (`mode tcp`,
 * `option splice-auto`) and socat, all through the same C backends and the
 * same C load client (bench/mirror_reference.c), on loopback, rounds
 * interleaved, medians reported, ratios taken round by round.
 *
 * Cases: one big upload; N parallel uploads; each without and with one
 * shadow; the same uploads with a SIGSTOPped shadow (onecopy mirror only: the
 * C relay writes its shadow inline and would hang); 1-byte request/response
 * latency. An upload is done when the primary has received every byte and its
 * 8-byte reply (the count it got) is back at the client. After each shadowed
 * run the harness waits until the shadow backend has logged the end of the
 * connection and checks it got the whole stream, so that no run overlaps the
 * previous one's shadow traffic. Writes bench/results/mirror.md.
 *
 * Environment (sizes are whole MiB, so that a run fits a busy box):
 * ONECOPY_MIRROR_BENCH_MIB (1024), ONECOPY_MIRROR_BENCH_PARALLEL (16),
 * ONECOPY_MIRROR_BENCH_PARALLEL_MIB (64), ONECOPY_MIRROR_BENCH_PINGS (20000),
 * ONECOPY_MIRROR_BENCH_PING_SECONDS (30, a bound per ping run),
 * ONECOPY_MIRROR_BENCH_ROUNDS (5), ONECOPY_MIRROR_BENCH_TOOLS
 * (direct,relay,relay-splice,haproxy,socat,mirror), ONECOPY_MIRROR_BENCH_VARIANTS
 * (`;`-separated sets of extra `onecopy mirror` flags, one group of rows each;
 * default `;--method splice;--max-lag 64M`: the defaults, the splice data
 * path, and a backlog that a healthy shadow on a busy 2-core box doesn't
 * outgrow during a 1 GiB upload),
 * ONECOPY_MIRROR_BENCH_LIFETIME (900 s: every process it starts is gone by
 * then, even if this harness is killed), ONECOPY_MIRROR_BENCH_CLI (the
 * onecopy entry point to run, default this checkout's cli/main.ts).
 *
 * @module
 */

const here = new URL(".", import.meta.url).pathname;
const cli = Deno.env.get("ONECOPY_MIRROR_BENCH_CLI") ||
  new URL("../cli/main.ts", import.meta.url).pathname;
const MiB = 2 ** 20;

/** What one run of the benchmark does; see the module doc for the variables. */
export interface MirrorBenchConfig {
  mib: number;
  parallel: number;
  parallelMib: number;
  pings: number;
  pingSeconds: number;
  rounds: number;
  tools: Set<string>;
  variants: string[];
  lifetime: number;
}

/** Reads the ONECOPY_MIRROR_BENCH_* variables; a bad value is an Error naming it. */
export function configFromEnv(env = Deno.env.toObject()): MirrorBenchConfig {
  const whole = (name: string, fallback: number) => {
    const text = env[`ONECOPY_MIRROR_BENCH_${name}`];
    const n = text === undefined || text === "" ? fallback : Number(text);
    if (!Number.isInteger(n) || n < 1) {
      throw new Error(`ONECOPY_MIRROR_BENCH_${name} wants a whole number from 1 up, not ${text}`);
    }
    return n;
  };
  const list = (name: string, fallback: string) =>
    (env[`ONECOPY_MIRROR_BENCH_${name}`] ?? fallback).split(",").map((x) => x.trim())
      .filter(Boolean);
  const known = ["direct", "relay", "relay-splice", "haproxy", "socat", "mirror"];
  const tools = new Set(list("TOOLS", known.join(",")));
  for (const t of tools) {
    if (!known.includes(t)) {
      throw new Error(`ONECOPY_MIRROR_BENCH_TOOLS: unknown tool ${t}`);
    }
  }
  return {
    mib: whole("MIB", 1024),
    parallel: whole("PARALLEL", 16),
    parallelMib: whole("PARALLEL_MIB", 64),
    pings: whole("PINGS", 20000),
    pingSeconds: whole("PING_SECONDS", 30),
    rounds: whole("ROUNDS", 5),
    tools,
    variants: (env.ONECOPY_MIRROR_BENCH_VARIANTS ?? ";--method splice;--max-lag 64M").split(";")
      .map((x) => x.trim()),
    lifetime: whole("LIFETIME", 900),
  };
}

/** The lines a child process prints, collected as they come. */
class Lines {
  readonly all: string[] = [];
  closed = false;
  #wake = () => {};

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#pump(stream);
  }

  async #pump(stream: ReadableStream<Uint8Array>) {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      for (let i; (i = rest.indexOf("\n")) >= 0; rest = rest.slice(i + 1)) {
        this.all.push(rest.slice(0, i));
      }
      this.#wake();
    }
    this.closed = true;
    this.#wake();
  }

  /** Waits until `done(lines)` holds, the stream ends, or `ms` have passed; returns `done`. */
  async until(done: (lines: string[]) => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!done(this.all) && !this.closed && Date.now() < end) {
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, Math.min(100, end - Date.now()));
        this.#wake = () => (clearTimeout(timer), wake());
      });
    }
    return done(this.all);
  }
}

/** Every Service started and not yet stopped, for the clean-up on any path. */
const running = new Set<Service>();

/** A process this harness started, under `timeout` so that it ends even if we don't. */
class Service {
  readonly lines: Lines;
  readonly errors: Lines;
  port = 0;
  /** The backends' and relay's own process group (they call setpgid), for SIGSTOP. */
  pgid = 0;

  constructor(readonly name: string, readonly child: Deno.ChildProcess) {
    this.lines = new Lines(child.stdout);
    this.errors = new Lines(child.stderr);
  }

  static start(name: string, cmd: string[], lifetime: number): Service {
    const child = new Deno.Command("timeout", {
      args: ["-k", "5", String(lifetime), ...cmd],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { ONECOPY_MIRROR_BENCH_LIFETIME: String(lifetime) },
    }).spawn();
    const s = new Service(name, child);
    running.add(s);
    return s;
  }

  /** The process whose CPU counts (the child of `timeout`; forked helpers are reaped into it). */
  cpuPid(): number | undefined {
    return children(this.child.pid)[0];
  }

  async stop(): Promise<void> {
    running.delete(this);
    await this.child.stdin.close().catch(() => {}); // backends and relays exit on stdin EOF
    if (this.pgid) signalGroup(this.pgid, "SIGCONT");
    try {
      Deno.kill(this.child.pid, "SIGTERM"); // timeout passes it on
    } catch { /* already gone */ }
    const killer = setTimeout(() => {
      try {
        Deno.kill(this.child.pid, "SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await this.child.status;
    clearTimeout(killer);
  }

  failure(): string {
    return this.errors.all.find((l) => l.trim() !== "") ?? "exited";
  }
}

function signalGroup(pgid: number, signal: Deno.Signal) {
  try {
    Deno.kill(-pgid, signal);
  } catch { /* the group is gone */ }
}

function children(pid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const ticksPerSecond = 100; // getconf CLK_TCK on Linux x86_64 and aarch64
/** User + system CPU seconds of `pid` and of its reaped children. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / ticksPerSecond;
  } catch {
    return 0;
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Connects until `port` accepts (bounded); false if it never does. */
async function accepting(port: number, service: Service, ms = 10000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    } catch {
      if (await Promise.race([service.child.status, sleep(100)])) return false;
    }
  }
  return false;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function run(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; out: string; err: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output()
    .catch((e) => ({
      success: false,
      stdout: new Uint8Array(),
      stderr: new TextEncoder().encode(String(e)),
    }));
  const d = new TextDecoder();
  return { ok: o.success, out: d.decode(o.stdout).trim(), err: d.decode(o.stderr).trim() };
}

/** Reads the "PORT PGID" line of a backend or relay. */
async function started(s: Service): Promise<Service> {
  if (!(await s.lines.until((l) => l.length > 0, 10000))) {
    throw new Error(`${s.name} did not start: ${s.failure()}`);
  }
  const [port, pgid] = s.lines.all.shift()!.split(" ").map(Number);
  s.port = port;
  s.pgid = pgid;
  return s;
}

/** One proxy set-up (or the direct connection) that the client runs through. */
interface Setup {
  name: string;
  kind: "direct" | "relay" | "haproxy" | "socat" | "mirror";
  shadow: "none" | "live" | "stopped";
  port: number;
  service?: Service;
}

interface Backends {
  primary: Service;
  shadow: Service;
  stoppable: Service;
}

async function startSetups(
  cfg: MirrorBenchConfig,
  bin: string,
  b: Backends,
  notes: string[],
): Promise<Setup[]> {
  const setups: Setup[] = [];
  const add = (name: string, kind: Setup["kind"], shadow: Setup["shadow"], s?: Service) =>
    setups.push({ name, kind, shadow, port: s?.port ?? b.primary.port, service: s });
  const life = cfg.lifetime;
  if (cfg.tools.has("direct")) add("direct (no proxy)", "direct", "none");
  for (const mode of ["copy", "splice"]) {
    if (!cfg.tools.has(mode === "copy" ? "relay" : "relay-splice")) continue;
    for (const shadow of [undefined, b.shadow.port]) {
      const name = `C relay${shadow ? " + shadow" : ""}${mode === "copy" ? "" : ", splice"}`;
      const cmd = [bin, "relay", mode, `${b.primary.port}`, ...(shadow ? [`${shadow}`] : [])];
      add(name, "relay", shadow ? "live" : "none", await started(Service.start(name, cmd, life)));
    }
  }

  if (cfg.tools.has("haproxy")) {
    const version = await run("haproxy", ["-v"]);
    if (!version.ok) {
      notes.push("HAProxy skipped: not installed (Debian package haproxy)");
    } else {
      notes.push(`HAProxy: ${version.out.split("\n")[0]}`);
      for (const splice of [true, false]) {
        const name = splice ? "HAProxy" : "HAProxy, no splice";
        add(name, "haproxy", "none", await startHaproxy(name, b.primary.port, splice, life));
      }
    }
  }
  if (cfg.tools.has("socat")) {
    const version = await run("socat", ["-V"]);
    if (!version.ok) notes.push("socat skipped: not installed (Debian package socat)");
    else {
      notes.push(
        `socat: ${
          version.out.split("\n")[1]?.trim()
        }; backlog=1024 (its default 5 drops parallel connects)`,
      );
      const port = freePort();
      const s = Service.start("socat", [
        "socat",
        `TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr,backlog=1024`,
        `TCP:127.0.0.1:${b.primary.port}`,
      ], life);
      s.port = port;
      if (!(await accepting(port, s))) throw new Error(`socat did not start: ${s.failure()}`);
      add("socat", "socat", "none", s);
    }
  }
  if (cfg.tools.has("mirror")) {
    const commit = await run("git", [
      "-C",
      new URL(".", `file://${cli}`).pathname,
      "log",
      "-1",
      "--format=%h %cI",
    ]);
    notes.push(`onecopy mirror: ${cli}${commit.ok ? ` (commit ${commit.out})` : ""}`);
    for (const variant of cfg.variants) {
      const name = `onecopy mirror ${variant}`.trim();
      const targets: [Setup["shadow"], Service | undefined][] = [
        ["none", undefined],
        ["live", b.shadow],
        ["stopped", b.stoppable],
      ];
      for (const [shadow, backend] of targets) {
        const full = name + { none: "", live: " + shadow", stopped: " + stopped shadow" }[shadow];
        const s = await startMirror(full, b.primary.port, backend?.port, variant, life);
        if (typeof s === "string") {
          notes.push(`${full} skipped: ${s}`);
          break;
        }
        add(full, "mirror", shadow, s);
      }
    }
  }
  return setups;
}

async function startHaproxy(name: string, primary: number, splice: boolean, life: number) {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "onecopy-mirror-bench-" });
  const cfg = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(
    cfg,
    [
      "global",
      "  maxconn 4096",
      "defaults",
      "  mode tcp",
      "  timeout connect 5s",
      "  timeout client 120s",
      "  timeout server 120s",
      ...(splice ? ["  option splice-auto"] : []),
      "listen mirror_bench",
      `  bind 127.0.0.1:${port}`,
      `  server primary 127.0.0.1:${primary}`,
      "",
    ].join("\n"),
  );
  const s = Service.start(name, ["haproxy", "-db", "-f", cfg], life);
  s.port = port;
  const up = await accepting(port, s);
  await Deno.remove(dir, { recursive: true });
  if (!up) throw new Error(`${name} did not start: ${s.failure()}`);
  return s;
}

/** Starts `onecopy mirror`; the reason as a string if it can't (not landed yet, bad flag). */
async function startMirror(
  name: string,
  primary: number,
  shadow: number | undefined,
  flags: string,
  life: number,
): Promise<Service | string> {
  const args = [Deno.execPath(), "run", "-A", cli, "mirror", "--listen", "tcp://127.0.0.1:0"];
  args.push("--to", `tcp://127.0.0.1:${primary}`);
  if (shadow) args.push("--shadow", `tcp://127.0.0.1:${shadow}`);
  args.push(...flags.split(/\s+/).filter(Boolean));
  const s = Service.start(name, args, life);
  const line = /onecopy mirror: listening on tcp:\/\/[^ ]*:(\d+)/;
  if (!(await s.errors.until((l) => l.some((x) => line.test(x)), 30000))) {
    const why = s.failure();
    await s.stop();
    return why;
  }
  s.port = Number(s.errors.all.map((x) => line.exec(x)).find(Boolean)![1]);
  return s;
}

/** One measurement: GB/s or latency, the proxy's CPU, and what the shadow got. */
interface Sample {
  gbps?: number;
  p50?: number;
  p99?: number;
  cpu: number;
  /** live: the shadow got the whole stream; stopped: it got less (it was dropped). */
  shadowOk?: boolean;
}

interface Case {
  name: string;
  kind: "upload" | "ping";
  conns: number;
  bytes: number;
}

/** Runs `setup` once for `c`; undefined (and why, in `failures`) if the client failed. */
async function measure(
  bin: string,
  cfg: MirrorBenchConfig,
  b: Backends,
  setup: Setup,
  c: Case,
): Promise<Sample | string> {
  const shadow = setup.shadow === "live" ? b.shadow : b.stoppable;
  const seen = shadow.lines.all.length;
  if (setup.shadow === "stopped") signalGroup(b.stoppable.pgid, "SIGSTOP");
  const pid = setup.service?.cpuPid();
  const cpu0 = cpuSeconds(pid);
  const r = c.kind === "upload"
    ? await run(bin, ["upload", `${setup.port}`, `${c.bytes}`, `${c.conns}`])
    : await run(bin, ["ping", `${setup.port}`, `${cfg.pings}`, `${cfg.pingSeconds}`]);
  if (setup.shadow === "stopped") signalGroup(b.stoppable.pgid, "SIGCONT");
  if (!r.ok) return r.err || "client failed";
  const [a, p99, trips] = r.out.split(" ").map(Number);
  // What one connection's whole stream is, as the backend counts it (mode byte, length, data).
  const whole = c.kind === "upload" ? 9 + c.bytes : 1 + trips;
  let shadowOk: boolean | undefined;
  if (setup.shadow !== "none") {
    // Wait for the shadow to log every connection's end, so that no shadow traffic spills over.
    const ended = (l: string[]) => l.length - seen >= c.conns;
    await shadow.lines.until(ended, setup.shadow === "live" ? 60000 : 10000);
    const got = shadow.lines.all.slice(seen).map((l) => Number(l.split(" ")[1]));
    const complete = got.length >= c.conns && got.every((n) => n === whole);
    shadowOk = setup.shadow === "live" ? complete : !complete;
  }
  // Forked connection handlers (C relay, socat) count once reaped: wait for them (bounded).
  for (let i = 0; i < 30 && pid !== undefined && children(pid).length > 0; i++) await sleep(100);
  const cpu = cpuSeconds(pid) - cpu0;
  return c.kind === "upload"
    ? { gbps: (c.bytes * c.conns) / 1e9 / a, cpu, shadowOk }
    : { p50: a, p99, cpu, shadowOk };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function applies(setup: Setup, c: Case): boolean {
  if (c.kind === "ping") return setup.shadow !== "stopped";
  return true;
}

type Results = Map<string, Map<string, (Sample | string)[]>>;

async function rounds(
  bin: string,
  cfg: MirrorBenchConfig,
  b: Backends,
  setups: Setup[],
  cases: Case[],
): Promise<Results> {
  const results: Results = new Map(setups.map((s) => [s.name, new Map()]));
  // One small untimed upload through each set-up first: connection set-up paths, page faults.
  for (const s of setups) await measure(bin, cfg, b, s, { ...cases[0], bytes: 16 * MiB });
  for (let r = 0; r < cfg.rounds; r++) {
    for (const c of cases) {
      for (const s of setups.filter((s) => applies(s, c))) {
        const sample = await measure(bin, cfg, b, s, c);
        const list = results.get(s.name)!;
        list.set(c.name, [...(list.get(c.name) ?? []), sample]);
        if (typeof sample === "string") console.error(`${s.name}, ${c.name}: ${sample}`);
      }
    }
    console.error(`mirror bench: round ${r + 1}/${cfg.rounds} done (load ${loadavg()})`);
  }
  return results;
}

/** Peak RSS over the whole run of the one-process proxies (a forking one's parent says nothing). */
function peakRss(setups: Setup[]): string {
  const peaks = setups.filter((s) => s.kind === "haproxy" || s.kind === "mirror").map((s) => {
    let kib: string | undefined;
    try {
      const status = Deno.readTextFileSync(`/proc/${s.service?.cpuPid()}/status`);
      kib = /VmHWM:\s*(\d+)/.exec(status)?.[1];
    } catch { /* gone: "?" */ }
    return `${s.name} ${kib ? (Number(kib) / 1024).toFixed(0) : "?"}`;
  });
  return `Peak RSS (MiB) over the whole run: ${peaks.join(", ")}.`;
}

function loadavg(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/** The samples of one set-up and case, in round order; failed rounds are undefined. */
function samples(res: Results, setup: string, c: Case): (Sample | undefined)[] {
  return (res.get(setup)?.get(c.name) ?? []).map((s) => (typeof s === "string" ? undefined : s));
}

/** Median over rounds of a/b, each pair from the same round (drift cancels). */
function ratio(
  res: Results,
  a: string,
  b: string,
  c: Case,
  pick: (s: Sample) => number | undefined,
): number | undefined {
  const xs = samples(res, a, c), ys = samples(res, b, c);
  const rs = xs.map((x, i) => {
    const p = x && pick(x), q = ys[i] && pick(ys[i]!);
    return p && q ? p / q : undefined;
  }).filter((x): x is number => x !== undefined);
  return rs.length ? median(rs) : undefined;
}

function medianOf(res: Results, setup: string, c: Case, pick: (s: Sample) => number | undefined) {
  const xs = samples(res, setup, c).map((s) => s && pick(s)).filter((x): x is number =>
    x !== undefined
  );
  return xs.length ? median(xs) : undefined;
}

const fmt = (x: number | undefined, digits = 2) => (x === undefined ? "—" : x.toFixed(digits));

/** The C relay row with the same shadows, for the "× C relay" column. */
const relayFor = (s: Setup) =>
  s.shadow === "none" ? "C relay" : s.shadow === "live" ? "C relay + shadow" : undefined;

function shadowCell(res: Results, s: Setup, c: Case): string {
  if (s.shadow === "none") return "";
  const xs = samples(res, s.name, c).filter((x) => x !== undefined);
  const ok = xs.filter((x) => x!.shadowOk).length;
  return s.shadow === "live" ? `${ok}/${xs.length} whole` : `${ok}/${xs.length} dropped`;
}

function uploadTable(res: Results, setups: Setup[], c: Case): string {
  const gbps = (x: Sample) => x.gbps;
  const cpuPerGB = (x: Sample) => x.gbps ? x.cpu / ((c.bytes * c.conns) / 1e9) : undefined;
  const rows = setups.filter((s) => applies(s, c)).map((s) => {
    const relay = relayFor(s);
    return `| ${s.name} | ${fmt(medianOf(res, s.name, c, gbps))} | ${
      relay && s.name !== relay ? fmt(ratio(res, s.name, relay, c, gbps)) : ""
    } | ${s.name !== "HAProxy" ? fmt(ratio(res, s.name, "HAProxy", c, gbps)) : ""} | ${
      s.kind === "direct" ? "" : fmt(medianOf(res, s.name, c, cpuPerGB))
    } | ${shadowCell(res, s, c)} |`;
  });
  return [
    `${c.name}`,
    "",
    "| set-up | GB/s | × C relay (same shadows) | × HAProxy | proxy CPU s/GB | shadow |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

/** Every set-up on one line: medians of each case (the README's table). */
function summaryTable(res: Results, setups: Setup[], cases: Case[]): string {
  const uploads = cases.filter((c) => c.kind === "upload");
  const ping = cases.find((c) => c.kind === "ping")!;
  const short = (c: Case) => `${c.conns}×${c.bytes / MiB} MiB`;
  const rows = setups.map((s) => {
    const shadow = s.shadow === "none" ? "" : uploads.map((c) => shadowCell(res, s, c)).join(", ");
    return `| ${s.name} | ${
      uploads.map((c) => fmt(medianOf(res, s.name, c, (x) => x.gbps))).join(" | ")
    } | ${applies(s, ping) ? fmt(medianOf(res, s.name, ping, (x) => x.p50), 1) : ""} | ${
      applies(s, ping) ? fmt(medianOf(res, s.name, ping, (x) => x.p99), 1) : ""
    } | ${shadow} |`;
  });
  return [
    `| set-up | ${
      uploads.map((c) => `${short(c)} GB/s`).join(" | ")
    } | ping p50 µs | ping p99 µs | shadow (${uploads.map(short).join(", ")}) |`,
    `| --- | ${uploads.map(() => "---").join(" | ")} | --- | --- | --- |`,
    ...rows,
    "",
  ].join("\n");
}

function pingTable(res: Results, setups: Setup[], c: Case): string {
  const rows = setups.filter((s) => applies(s, c)).map((s) =>
    `| ${s.name} | ${fmt(medianOf(res, s.name, c, (x) => x.p50), 1)} | ${
      fmt(medianOf(res, s.name, c, (x) => x.p99), 1)
    } | ${s.name !== "HAProxy" ? fmt(ratio(res, s.name, "HAProxy", c, (x) => x.p50)) : ""} | ${
      shadowCell(res, s, c)
    } |`
  );
  return [
    `${c.name}`,
    "",
    "| set-up | p50 µs | p99 µs | p50 × HAProxy | shadow |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

/** Each target of issue 13 with its measured figure; one line per onecopy set-up variant. */
/** Runs of `setup` in which the shadow did not do what it should (live: whole; stopped: cut). */
function shadowMisses(res: Results, setup: string, c: Case): string | undefined {
  const xs = samples(res, setup, c).filter((x) => x !== undefined);
  const bad = xs.filter((x) => !x!.shadowOk).length;
  if (!bad) return undefined;
  return setup.endsWith("stopped shadow")
    ? `the stopped shadow was not cut short in ${bad} of ${xs.length} runs`
    : `the shadow did not get the whole stream in ${bad} of ${xs.length} runs`;
}

/** Each target of issue 13 with its measured figure; one line per onecopy set-up variant. */
function targets(res: Results, setups: Setup[], cases: Case[]): string[] {
  const out: string[] = [];
  const gbps = (x: Sample) => x.gbps;
  const check = (
    what: string,
    x: number | undefined,
    ok: (x: number) => boolean,
    goal: string,
    miss?: string,
  ) => {
    const verdict = x === undefined
      ? "not measured"
      : miss && what.includes("+ shadow")
      ? `MISSED (${miss})`
      : `${ok(x) ? "met" : "MISSED"}${miss ? ` (${miss})` : ""}`;
    out.push(`- ${what}: ${fmt(x)} (target ${goal}): ${verdict}`);
  };
  for (const m of setups.filter((s) => s.kind === "mirror" && s.shadow === "none")) {
    for (const c of cases.filter((c) => c.kind === "upload")) {
      check(
        `${c.name}, ${m.name} × C relay`,
        ratio(res, m.name, "C relay", c, gbps),
        (x) => x >= 0.85,
        "≥ 0.85",
      );
      const shadowed = `${m.name} + shadow`;
      check(
        `${c.name}, ${shadowed} × C relay + shadow`,
        ratio(res, shadowed, "C relay + shadow", c, gbps),
        (x) => x >= 0.85,
        "≥ 0.85",
        shadowMisses(res, shadowed, c),
      );
      check(
        `${c.name}, ${m.name} × HAProxy`,
        ratio(res, m.name, "HAProxy", c, gbps),
        (x) => x >= 1.2,
        "≥ 1.2",
      );
      const stopped = `${m.name} + stopped shadow`;
      check(
        `${c.name}, ${stopped} × ${m.name}`,
        ratio(res, stopped, m.name, c, gbps),
        (x) => x >= 0.9,
        "≥ 0.9",
        shadowMisses(res, stopped, c),
      );
    }
    const ping = cases.find((c) => c.kind === "ping")!;
    check(
      `ping p50, ${m.name} × HAProxy`,
      ratio(res, m.name, "HAProxy", ping, (x) => x.p50),
      (x) => x <= 1.05,
      "≤ 1.05",
    );
  }
  return out;
}

async function buildReference(dir: string): Promise<string> {
  const bin = `${dir}/mirror_reference`;
  const cc = await run("cc", ["-O2", "-pthread", "-o", bin, `${here}mirror_reference.c`]);
  if (!cc.ok) throw new Error(`cc mirror_reference.c: ${cc.err || "no cc"}`);
  return bin;
}

/** Runs the whole mirror benchmark; writes bench/results/mirror.md and returns its text. */
export async function mirrorCompare(cfg: MirrorBenchConfig = configFromEnv()): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "onecopy-mirror-bench-" });
  const cleanup = () => Promise.all([...running].map((s) => s.stop()));
  const onSignal = () => cleanup().finally(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const bin = await buildReference(dir);
    const loadBefore = loadavg();
    const backend = (name: string) => started(Service.start(name, [bin, "server"], cfg.lifetime));
    const b = {
      primary: await backend("primary"),
      shadow: await backend("shadow"),
      stoppable: await backend("stoppable shadow"),
    };
    const notes: string[] = [];
    const setups = await startSetups(cfg, bin, b, notes);
    const cases: Case[] = [
      { name: `1 upload of ${cfg.mib} MiB`, kind: "upload", conns: 1, bytes: cfg.mib * MiB },
      {
        name: `${cfg.parallel} parallel uploads of ${cfg.parallelMib} MiB`,
        kind: "upload",
        conns: cfg.parallel,
        bytes: cfg.parallelMib * MiB,
      },
      { name: `ping: ${cfg.pings} 1-byte round trips`, kind: "ping", conns: 1, bytes: 1 },
    ];
    const res = await rounds(bin, cfg, b, setups, cases);
    notes.push(peakRss(setups));
    const text = report(cfg, setups, cases, res, notes, loadBefore);
    await Deno.mkdir(`${here}results`, { recursive: true });
    await Deno.writeTextFile(`${here}results/mirror.md`, text);
    // Aligned like the committed results, so `deno fmt --check` stays clean after a run.
    await run(Deno.execPath(), ["fmt", "--quiet", `${here}results/mirror.md`]);
    return text;
  } finally {
    await cleanup();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await Deno.remove(dir, { recursive: true });
  }
}

function report(
  cfg: MirrorBenchConfig,
  setups: Setup[],
  cases: Case[],
  res: Results,
  notes: string[],
  loadBefore: string,
): string {
  const failures = [...res].flatMap(([name, byCase]) =>
    [...byCase].flatMap(([c, xs]) =>
      xs.filter((x) => typeof x === "string").map((x) => `${name}, ${c}: ${x}`)
    )
  );
  const t = targets(res, setups, cases);
  return [
    `Mirror benchmark, ${new Date().toISOString().slice(0, 10)}: medians of ${cfg.rounds} ` +
    `interleaved rounds; ratios are medians of per-round ratios. Linux ${Deno.osRelease()}, ` +
    `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}; load average ` +
    `(1, 5, 15 min) ${loadBefore} before, ${loadavg()} after (other work shares this box).`,
    "All on loopback; the same C backends (recv MSG_TRUNC sinks that reply with the count) and C " +
    "load client for every set-up (bench/mirror_reference.c). An upload ends when the primary's " +
    "8-byte reply reaches the client. Proxy CPU counts the proxy process and its reaped children. " +
    "Shadow: in how many runs the live shadow got the whole stream, or the SIGSTOPped shadow was " +
    "cut short (dropped).",
    ...notes.map((x) => `- ${x}`),
    "",
    "Summary (medians):",
    "",
    summaryTable(res, setups, cases),
    ...cases.map((c) =>
      c.kind === "upload" ? uploadTable(res, setups, c) : pingTable(res, setups, c)
    ),
    ...(t.length ? ["Targets (issue 13):", "", ...t, ""] : []),
    ...(failures.length ? ["Failed runs:", "", ...failures.map((x) => `- ${x}`), ""] : []),
  ].join("\n");
}

if (import.meta.main) {
  try {
    console.log(await mirrorCompare());
  } catch (err) {
    console.error(`bench:mirror: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
