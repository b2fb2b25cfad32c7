/**
 * A backend process for the mirror tests: listens, prints `listening PORT`,
 * then serves connections, the Nth by the Nth mode of `--mode` (the last one
 * repeats), and prints one line per connection: `ID BYTES SHA256 END`, where
 * END is `eof` or the error code. Modes:
 *   sink       read to EOF
 *   echo       write back what it reads; half-close at EOF
 *   greet      write "hello\n" and half-close first, then read to EOF
 *   stall      accept and never read
 *   hold       read to EOF, then keep the connection open (never close it)
 *   die:N      read N bytes, then exit the whole process
 *   close:N    read N bytes, then close (the kernel resets: unread bytes remain)
 *
 * deno run -A tests/mirror_peer.ts LISTEN_URL MODES
 */

import { createHash } from "node:crypto";

const [url, modes = "sink"] = Deno.args;
const modeList = modes.split(",");
const listener = url.startsWith("unix:")
  ? Deno.listen({ transport: "unix", path: url.slice(5) })
  : Deno.listen({ hostname: "127.0.0.1", port: Number(url.split(":").pop()) });
const port = listener.addr.transport === "tcp" ? listener.addr.port : 0;
console.log(`listening ${port}`);

async function serve(conn: Deno.Conn, id: number, mode: string) {
  const [name, arg] = mode.split(":");
  const limit = Number(arg ?? Infinity);
  const hash = createHash("sha256");
  let bytes = 0;
  let end = "eof";
  if (name === "stall") return await new Promise(() => {});
  const buf = new Uint8Array(64 * 1024);
  try {
    if (name === "greet") {
      await conn.write(new TextEncoder().encode("hello\n"));
      await conn.closeWrite();
    }
    for (;;) {
      const n = await conn.read(buf.subarray(0, Math.min(buf.length, limit - bytes)));
      if (n === null) break;
      hash.update(buf.subarray(0, n));
      bytes += n;
      if (name === "echo") {
        for (let off = 0; off < n;) off += await conn.write(buf.subarray(off, n));
      }
      if (bytes >= limit) {
        if (name === "die") Deno.exit(3);
        end = "closed";
        break;
      }
    }
    if (name === "echo") await conn.closeWrite();
  } catch (e) {
    end = (e as { code?: string }).code ?? String(e);
  }
  console.log(`${id} ${bytes} ${hash.digest("hex")} ${end}`);
  if (name === "hold") return await new Promise(() => {});
  try {
    conn.close();
  } catch { /* closed */ }
}

let id = 0;
for (;;) {
  let conn: Deno.Conn;
  try {
    conn = await listener.accept();
  } catch {
    continue; // a client reset before it was accepted (ENOTCONN, ECONNABORTED)
  }
  const mode = modeList[Math.min(id, modeList.length - 1)];
  serve(conn, ++id, mode).catch((e) => console.error(`peer: ${e}`)); // never end the process
}
