/** Imports go one way: cli/ → mod.ts (or lib/internal.ts) → lib/ → ffi/ → the shim (issue 12). */

import assert from "node:assert/strict";

const root = new URL("..", import.meta.url);

function importsOf(dir: string): { file: string; spec: string }[] {
  const out = [];
  for (const entry of Deno.readDirSync(new URL(dir, root))) {
    if (!entry.name.endsWith(".ts")) continue;
    const text = Deno.readTextFileSync(new URL(`${dir}/${entry.name}`, root));
    for (const m of text.matchAll(/^(?:import|export)\b[^;]*?from\s+"([^"]+)"/gms)) {
      out.push({ file: `${dir}/${entry.name}`, spec: m[1] });
    }
  }
  return out;
}

Deno.test("cli/ reaches the library only through mod.ts and lib/internal.ts", () => {
  const allowed = /^(\.\/|\.\.\/mod\.ts$|\.\.\/lib\/internal\.ts$|\.\.\/deno\.json$|node:)/;
  const bad = importsOf("cli").filter((i) => !allowed.test(i.spec));
  assert.deepEqual(bad, []);
});

Deno.test("lib/ never calls the shim's symbols itself: only through ffi/ wrappers", () => {
  const bad = importsOf("lib").filter((i) => i.spec === "../ffi/load.ts");
  assert.deepEqual(bad, []);
  for (const entry of Deno.readDirSync(new URL("lib", root))) {
    const text = Deno.readTextFileSync(new URL(`lib/${entry.name}`, root));
    assert.ok(!/\bshim\(\)|\boc_[a-z]/.test(text), `lib/${entry.name} calls the shim directly`);
  }
});

Deno.test("lib/ never handles a pointer: addresses and pointer fields are ffi/'s", () => {
  for (const entry of Deno.readDirSync(new URL("lib", root))) {
    const text = Deno.readTextFileSync(new URL(`lib/${entry.name}`, root));
    assert.ok(!/Deno\.UnsafePointer/.test(text), `lib/${entry.name} uses Deno.UnsafePointer`);
  }
});
