/** An independent, slow XXH64 (BigInt, straight from the spec) to check the shim's. */

const M = (1n << 64n) - 1n;
const P1 = 11400714785074694791n;
const P2 = 14029467366897019727n;
const P3 = 1609587929392839161n;
const P4 = 9650029242287828579n;
const P5 = 2870177450012600261n;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M;
const round = (acc: bigint, lane: bigint) => (rotl((acc + lane * P2) & M, 31n) * P1) & M;
const merge = (acc: bigint, v: bigint) => (((acc ^ round(0n, v)) * P1) + P4) & M;

export function xxh64(data: Uint8Array, seed = 0n): string {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const u64 = (i: number) => view.getBigUint64(i, true);
  const u32 = (i: number) => BigInt(view.getUint32(i, true));
  let i = 0;
  let h: bigint;
  if (data.length >= 32) {
    let v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M];
    for (; i + 32 <= data.length; i += 32) v = v.map((acc, k) => round(acc, u64(i + k * 8)));
    h = (rotl(v[0], 1n) + rotl(v[1], 7n) + rotl(v[2], 12n) + rotl(v[3], 18n)) & M;
    for (const acc of v) h = merge(h, acc);
  } else h = (seed + P5) & M;
  h = (h + BigInt(data.length)) & M;
  for (; i + 8 <= data.length; i += 8) h = ((rotl(h ^ round(0n, u64(i)), 27n) * P1) + P4) & M;
  if (i + 4 <= data.length) {
    h = ((rotl(h ^ ((u32(i) * P1) & M), 23n) * P2) + P3) & M;
    i += 4;
  }
  for (; i < data.length; i++) h = (rotl(h ^ ((BigInt(data[i]) * P5) & M), 11n) * P1) & M;
  h = ((h ^ (h >> 33n)) * P2) & M;
  h = ((h ^ (h >> 29n)) * P3) & M;
  h ^= h >> 32n;
  return h.toString(16).padStart(16, "0");
}
