/**
 * `npm run icon`: draws the app's icon procedurally (no image tools needed) into build/icon.png
 * (1024 px) and build/icon.icns (PNG entries 128–1024 px), which electron-builder uses: two
 * overlapping discs, the local model's green and the cloud's magenta, on a dark rounded square.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";

type Rgba = [number, number, number, number];

/** Colour at (x, y) in [0, 1]² (before antialiasing). */
function shade(x: number, y: number): Rgba {
  const m = 0.09; // margin, as macOS icons have
  const r = 0.2; // corner radius of the square
  const qx = Math.max(Math.abs(x - 0.5) - (0.5 - m - r), 0);
  const qy = Math.max(Math.abs(y - 0.5) - (0.5 - m - r), 0);
  if (Math.hypot(qx, qy) > r) return [0, 0, 0, 0];
  const disc = (cx: number, cy: number, rad: number) => Math.hypot(x - cx, y - cy) <= rad;
  const local = disc(0.41, 0.55, 0.2);
  const cloud = disc(0.59, 0.45, 0.2);
  if (local && cloud) return [250, 250, 250, 255];
  if (local) return [46, 204, 113, 255];
  if (cloud) return [214, 64, 196, 255];
  const g = 24 + Math.round(22 * (1 - y));
  return [g, g + 6, g + 24, 255];
}

/** An RGBA image of size², 4× supersampled. */
function render(size: number): Buffer {
  const px = Buffer.alloc(size * size * 4);
  const s = 4;
  for (let j = 0; j < size; j++) {
    for (let i = 0; i < size; i++) {
      const acc = [0, 0, 0, 0];
      for (let v = 0; v < s; v++) {
        for (let u = 0; u < s; u++) {
          const c = shade((i + (u + 0.5) / s) / size, (j + (v + 0.5) / s) / size);
          for (let k = 0; k < 3; k++) acc[k] += c[k] * c[3];
          acc[3] += c[3];
        }
      }
      const o = (j * size + i) * 4;
      for (let k = 0; k < 3; k++) px[o + k] = acc[3] ? Math.round(acc[k] / acc[3]) : 0;
      px[o + 3] = Math.round(acc[3] / (s * s));
    }
  }
  return px;
}

const CRC = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

export function png(size: number): Buffer {
  const rgba = render(size);
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let j = 0; j < size; j++) rgba.copy(raw, j * (size * 4 + 1) + 1, j * size * 4, (j + 1) * size * 4); // filter 0 per row
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw, { level: 9 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** An .icns holding PNG entries (ic07 128, ic08 256, ic09 512, ic10 1024 px). */
export function icns(pngs: Map<number, Buffer>): Buffer {
  const types: Record<number, string> = { 128: "ic07", 256: "ic08", 512: "ic09", 1024: "ic10" };
  const entries = [...pngs].map(([size, data]) => {
    const head = Buffer.alloc(8);
    head.write(types[size]!, 0, "latin1");
    head.writeUInt32BE(data.length + 8, 4);
    return Buffer.concat([head, data]);
  });
  const head = Buffer.alloc(8);
  head.write("icns", 0, "latin1");
  head.writeUInt32BE(8 + entries.reduce((n, e) => n + e.length, 0), 4);
  return Buffer.concat([head, ...entries]);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "build");
  const pngs = new Map([128, 256, 512, 1024].map((s) => [s, png(s)]));
  writeFileSync(path.join(dir, "icon.png"), pngs.get(1024)!);
  writeFileSync(path.join(dir, "icon.icns"), icns(pngs));
  console.log(`wrote ${dir}/icon.png and icon.icns`);
}
