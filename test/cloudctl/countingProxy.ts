/** A TCP proxy on loopback that counts what passes: connections and bytes each way (the wire, headers and all). */
import net from "node:net";
import type { AddressInfo } from "node:net";

export interface CountingProxy {
  url: string;
  readonly connections: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
  close(): Promise<void>;
}

export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const t = new URL(target);
  const counts = { connections: 0, bytesUp: 0, bytesDown: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    counts.connections++;
    const upstream = net.connect(Number(t.port), t.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (d: Buffer) => (counts.bytesUp += d.length));
    upstream.on("data", (d: Buffer) => (counts.bytesDown += d.length));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get connections() {
      return counts.connections;
    },
    get bytesUp() {
      return counts.bytesUp;
    },
    get bytesDown() {
      return counts.bytesDown;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
