/**
 * The Deno-native sender for bench:compare: what Deno code does today without
 * onecopy. `deno run -A bench/native_send.ts FILE PORT N` reads FILE in 1 MiB
 * chunks with Deno.FsFile and writes each chunk to N loopback TCP connections.
 *
 * @module
 */

const [path, port, count] = Deno.args;
using file = await Deno.open(path);
const conns = await Promise.all(
  Array.from(
    { length: Number(count) },
    () => Deno.connect({ hostname: "127.0.0.1", port: Number(port) }),
  ),
);
const buf = new Uint8Array(1 << 20);
for (let n; (n = await file.read(buf)) !== null;) {
  await Promise.all(conns.map(async (c) => {
    for (let off = 0; off < n;) off += await c.write(buf.subarray(off, n));
  }));
}
conns.forEach((c) => c.close());
