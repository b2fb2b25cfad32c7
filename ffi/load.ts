/**
 * Loads libonecopy. In order: the path in `ONECOPY_SHIM`; else the bytes
 * embedded in ffi/shim_<arch>.generated.ts, written once to a per-user cache
 * file named by their hash (temp file + rename, so concurrent loaders are
 * safe; a corrupt cache file is replaced), then `Deno.dlopen`. Without a cache
 * directory we can trust (HOME/XDG_CACHE_HOME unreadable, or the directory is
 * someone else's or writable by others) the library is opened from memory (a
 * sealed memfd, ffi/memfd.ts: no file at all); where the system cannot do
 * that, it is written to a private temp directory, opened, and the directory
 * removed at once (the mapping stays). The permissions each way needs are
 * checked first, all at once (ffi/permissions.ts).
 *
 * @module
 */

import { boundLater, type ShimSymbols, symbols } from "./symbols.ts";
import { granted, loaderNeeds, PermissionError, requirePermissions } from "./permissions.ts";
import { dlopenFromMemory } from "./memfd.ts";
import { asError } from "./errors.ts";
import * as x86_64 from "./shim_x86_64.generated.ts";
import * as aarch64 from "./shim_aarch64.generated.ts";

const embedded: Record<string, { sha256: string; base64: string }> = { x86_64, aarch64 };

let loaded: ShimSymbols | undefined;

/** An environment variable, or undefined without permission to read it (never prompts). */
function env(name: string): string | undefined {
  if (!granted({ name: "env", variable: name })) return undefined;
  return Deno.env.get(name);
}

// Plain loops: these run once, before the JIT, where Uint8Array.from() with a
// map function and every() took ~20 ms each on 25 KB (measured).
function decode(base64: string): Uint8Array {
  const native = (Uint8Array as { fromBase64?: (s: string) => Uint8Array }).fromBase64?.(base64);
  if (native) return native;
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * Whether `file` holds exactly the library whose base64 is `base64`: encoded
 * natively and compared as strings (~0.07 ms for ~50 KB, against ~2.5 ms for
 * a compare loop that runs before the JIT), bytes compared where the runtime
 * has no `toBase64`.
 */
function holds(file: Uint8Array, base64: string): boolean {
  const toBase64 = (file as { toBase64?: () => string }).toBase64;
  return toBase64 ? toBase64.call(file) === base64 : sameBytes(file, decode(base64));
}

/** Byte equality, four bytes a step (a byte loop over the ~70 KB library took ~3 ms at start-up). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  const words = a.length >>> 2;
  const aligned = a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0;
  if (aligned && words > 0) {
    const x = new Int32Array(a.buffer, a.byteOffset, words);
    const y = new Int32Array(b.buffer, b.byteOffset, words);
    for (let i = 0; i < words; i++) if (x[i] !== y[i]) return false;
  }
  for (let i = aligned ? words * 4 : 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The per-user cache directory, or undefined when HOME/XDG_CACHE_HOME cannot be read. */
export function cacheDir(): string | undefined {
  const base = env("XDG_CACHE_HOME") || (env("HOME") ? `${env("HOME")}/.cache` : undefined);
  return base && `${base}/onecopy`;
}

/** Where private directories go: the one `Deno.makeTempDir()` would use. */
function tempBase(): string {
  return env("TMPDIR") || "/tmp";
}

/** The cache file's name: the library's hash, so versions never collide. */
function libraryName(): string {
  return `libonecopy-${embedded[supportedArch()].sha256.slice(0, 16)}.so`;
}

/**
 * Whether `dir` (created 0700 if missing) may hold the library: a directory,
 * not a symlink, ours, writable by nobody else. Anyone else who can write there
 * could swap the library between our check of its bytes and `dlopen()`.
 * Ownership is told by a probe file we create there (no --allow-sys needed).
 */
export function trustedDir(dir: string): boolean {
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const info = Deno.lstatSync(dir);
    if (!info.isDirectory || info.isSymlink || (info.mode ?? 0o777) & 0o022) return false;
    const probe = Deno.makeTempFileSync({ dir, prefix: ".owner-" });
    try {
      if (Deno.lstatSync(probe).uid !== info.uid) return false;
    } finally {
      Deno.removeSync(probe);
    }
    if ((info.mode ?? 0) & 0o077) Deno.chmodSync(dir, 0o700); // made by an older version
    return true;
  } catch {
    return false; // cannot create or inspect it: not a place to load code from
  }
}

/** Throws unless this platform has an embedded shim; returns its arch name. */
export function supportedArch(os: string = Deno.build.os, arch: string = Deno.build.arch): string {
  if (os !== "linux" || !(arch in embedded)) {
    throw new Error(
      `onecopy needs Linux on x86_64 or aarch64 (splice/tee/vmsplice); this is ${os}/${arch}`,
    );
  }
  return arch;
}

/**
 * Writes the embedded library for this arch to the cache (unless an identical
 * file is there already) and returns its path.
 */
export function cachedLibraryPath(dir: string): string {
  const { base64 } = embedded[supportedArch()];
  const path = `${dir}/${libraryName()}`;
  try {
    if (holds(Deno.readFileSync(path), base64)) return path;
  } catch { /* missing: write it */ }
  const bytes = decode(base64);
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  try {
    Deno.writeFileSync(tmp, bytes, { mode: 0o644 });
    Deno.renameSync(tmp, path); // atomic: a concurrent loader sees the old or the new file, whole
  } catch (err) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never written */ }
    throw err;
  }
  return path;
}

/** The shim's symbols, loaded on first use (`library()` under its short name). */
export const shim: () => ShimSymbols = library;

/** The part of the symbol table named by `names`. */
function part(names: readonly string[]): Deno.ForeignLibraryInterface {
  return Object.fromEntries(names.map((n) => [n, symbols[n as keyof typeof symbols]]));
}

/**
 * Binds the library at `path` (a file that stays where it is): what every run
 * needs now, each group of `boundLater` on the first use of one of its
 * symbols (the getter then gives way to the bound function). A relative path
 * is bound whole at once: glibc finds the loaded library again by the name
 * given, but a libc that reopens the path (musl) would look for a group's
 * file elsewhere after a chdir.
 */
function bindLazily(path: string): ShimSymbols {
  if (!path.startsWith("/")) return Deno.dlopen(path, symbols).symbols;
  const later = new Set<string>(Object.values(boundLater).flat());
  const table: Record<string, unknown> = {
    ...Deno.dlopen(path, part(Object.keys(symbols).filter((n) => !later.has(n)))).symbols,
  };
  for (const names of Object.values(boundLater)) {
    const bindGroup = () => {
      let bound;
      try {
        bound = Deno.dlopen(path, part(names)).symbols;
      } catch (cause) {
        throw new Error(
          `onecopy: cannot load the native shim from ${path}: ${asError(cause).message}`,
          {
            cause,
          },
        );
      }
      for (const n of names) Object.defineProperty(table, n, { value: bound[n], enumerable: true });
    };
    for (const n of names) {
      Object.defineProperty(table, n, {
        configurable: true,
        enumerable: true,
        get: () => (bindGroup(), table[n]),
      });
    }
  }
  return table as ShimSymbols;
}

/**
 * Writes the library into a fresh private directory (0700) under `base`,
 * opens it and removes the directory at once: nothing is left behind, and
 * the open mapping does not need the file.
 */
function loadPrivately(base: string, bytes: Uint8Array): ShimSymbols {
  const dir = Deno.makeTempDirSync({ dir: base, prefix: "onecopy-" });
  try {
    const path = `${dir}/${libraryName()}`;
    Deno.writeFileSync(path, bytes, { mode: 0o600 });
    return Deno.dlopen(path, symbols).symbols; // all at once: the file is gone after this
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const envHint = "with --allow-env=HOME,XDG_CACHE_HOME the shim is cached in ~/.cache/onecopy " +
  "instead of unpacked on every run";

/** Opens the library from where it should come from; permissions are checked first. */
function open(): ShimSymbols {
  const override = env("ONECOPY_SHIM");
  if (override) {
    requirePermissions(loaderNeeds(override));
    return bindLazily(override);
  }
  const dir = cacheDir();
  if (dir) {
    requirePermissions(loaderNeeds(`${dir}/${libraryName()}`, { path: dir, read: true }));
    if (trustedDir(dir)) return bindLazily(cachedLibraryPath(dir));
  }
  // From memory, with --allow-ffi alone (unscoped: it opens libc); else from a
  // private temp directory, as where the system refuses a memfd.
  const base = tempBase();
  if (!granted({ name: "ffi", path: `${base}/` })) {
    requirePermissions(loaderNeeds(""), dir ? "" : envHint);
  }
  const bytes = decode(embedded[supportedArch()].base64);
  // All at once: the memfd is closed once it is mapped.
  const inMemory = dlopenFromMemory("libonecopy", bytes, symbols);
  if (inMemory) return inMemory.symbols;
  requirePermissions(loaderNeeds(`${base}/`, { path: base, read: false }), dir ? "" : envHint);
  return loadPrivately(base, bytes);
}

/** Loads (once) and returns the shim's symbols. */
export function library(): ShimSymbols {
  if (loaded) return loaded;
  try {
    loaded = open();
  } catch (cause) {
    if (cause instanceof PermissionError) throw cause; // already says what to do
    const override = env("ONECOPY_SHIM");
    const where = override ? ` from ${override}` : "";
    throw new Error(`onecopy: cannot load the native shim${where}: ${asError(cause).message}`, {
      cause,
    });
  }
  return loaded;
}
