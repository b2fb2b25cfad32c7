/**
 * Loads libonecopy. In order: the path in `ONECOPY_SHIM`; else the bytes
 * embedded in ffi/shim_<arch>.generated.ts, written once to a per-user cache
 * file named by their hash (temp file + rename, so concurrent loaders are
 * safe; a corrupt cache file is replaced), then `Deno.dlopen`.
 *
 * @module
 */

import { type ShimSymbols, symbols } from "./symbols.ts";
import * as x86_64 from "./shim_x86_64.generated.ts";
import * as aarch64 from "./shim_aarch64.generated.ts";

const embedded: Record<string, { sha256: string; base64: string }> = { x86_64, aarch64 };

let loaded: Deno.DynamicLibrary<typeof symbols> | undefined;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
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

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The directory for the cached shared library. */
export function cacheDir(): string {
  const base = env("XDG_CACHE_HOME") || (env("HOME") ? `${env("HOME")}/.cache` : undefined);
  return `${base ?? Deno.makeTempDirSync({ prefix: "onecopy-" })}/onecopy`;
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
export function cachedLibraryPath(dir = cacheDir()): string {
  const { sha256, base64 } = embedded[supportedArch()];
  const bytes = decode(base64);
  const path = `${dir}/libonecopy-${sha256.slice(0, 16)}.so`;
  try {
    if (sameBytes(Deno.readFileSync(path), bytes)) return path;
  } catch { /* missing: write it */ }
  Deno.mkdirSync(dir, { recursive: true });
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

/** Loads (once) and returns the shim's symbols. */
export function shim(): ShimSymbols {
  return library().symbols;
}

/** Loads (once) and returns the shim library. */
export function library(): Deno.DynamicLibrary<typeof symbols> {
  if (loaded) return loaded;
  let path = env("ONECOPY_SHIM");
  try {
    path ??= cachedLibraryPath();
    loaded = Deno.dlopen(path, symbols);
  } catch (cause) {
    const where = path ? ` from ${path}` : "";
    throw new Error(`onecopy: cannot load the native shim${where}: ${message(cause)}`, { cause });
  }
  return loaded;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
