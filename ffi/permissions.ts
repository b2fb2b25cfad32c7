/**
 * The Deno permissions loading the shim needs, checked all at once before
 * anything is touched, so a missing one is one message naming every flag to
 * add, instead of one failure per run. Queries never prompt.
 *
 * @module
 */

/** One permission the loader needs, and the flag that grants it. */
export interface Need {
  descriptor: Deno.PermissionDescriptor;
  flag: string;
}

/** Whether a permission is granted right now (without prompting). */
export function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/**
 * The needs for dlopen()ing `lib` (`""`: any library, as loading from memory
 * opens libc and /proc/self/fd/N), and for reading/writing `dir` when it is a
 * cache or a private temp directory.
 */
export function loaderNeeds(lib: string, dir?: { path: string; read: boolean }): Need[] {
  const ffi: Deno.PermissionDescriptor = lib ? { name: "ffi", path: lib } : { name: "ffi" };
  const needs: Need[] = [{ descriptor: ffi, flag: "--allow-ffi" }];
  if (dir) {
    if (dir.read) {
      needs.push({
        descriptor: { name: "read", path: dir.path },
        flag: `--allow-read=${dir.path}`,
      });
    }
    needs.push({
      descriptor: { name: "write", path: dir.path },
      flag: `--allow-write=${dir.path}`,
    });
  }
  return needs;
}

/** A missing permission, with every flag to add in one message. */
export class PermissionError extends Error {
  /** The flags to add, e.g. `["--allow-ffi", "--allow-write=/tmp"]`. */
  readonly flags: string[];
  constructor(flags: string[], hint = "") {
    super(
      `onecopy needs permissions it was not given: run again with ${flags.join(" ")}` +
        ` (or -A)${hint ? `; ${hint}` : ""}`,
    );
    this.name = "PermissionError";
    this.flags = flags;
  }
}

/** Throws one `PermissionError` naming every need not granted. */
export function requirePermissions(needs: Need[], hint?: string): void {
  const missing = needs.filter((n) => !granted(n.descriptor)).map((n) => n.flag);
  if (missing.length) throw new PermissionError(missing, hint);
}
