/**
 * Connection admission for the cloud server: bounds on open sockets, all told and per address, that
 * a flood of unfinished connections cannot use to lock real clients out.
 *
 * A plain cap (Node's `server.maxConnections`) refuses the newest connection, so 1,100 sockets that
 * never finish their headers held every slot until the header timeout reaped them, and an
 * authenticated client was turned away meanwhile. Here a socket becomes *trusted* once a request on it
 * passes authentication; at a cap, the oldest untrusted socket with no request in progress is closed to
 * make room for the newcomer, and only when every socket is trusted or busy is the newcomer refused.
 * Unfinished sockets are also reaped by the server's short header timeout (server.ts).
 */
import type { Socket } from "node:net";

export interface ConnectionLimits {
  /** open sockets, all addresses together */
  maxConnections: number;
  /** open sockets from one remote address */
  maxPerAddress: number;
}

export interface ConnectionStats {
  open: number;
  /** untrusted sockets closed to make room for a new connection */
  evicted: number;
  /** new connections refused: every socket was trusted or busy */
  refused: number;
}

interface Tracked {
  socket: Socket;
  address: string;
  trusted: boolean;
}

export class ConnectionGuard {
  /** open sockets in arrival order (a Map iterates in insertion order: the oldest first) */
  private readonly open = new Map<Socket, Tracked>();
  private readonly perAddress = new Map<string, number>();
  private evicted = 0;
  private refused = 0;

  constructor(
    private readonly limits: ConnectionLimits,
    /** whether a request of the server's is in progress on the socket (never evicted then) */
    private readonly busy: (socket: Socket) => boolean,
  ) {}

  /** Admits a new socket, evicting an untrusted idle one at a cap; destroys the newcomer when none can go. */
  admit(socket: Socket): void {
    const address = socket.remoteAddress ?? "?";
    if ((this.perAddress.get(address) ?? 0) >= this.limits.maxPerAddress && !this.evictOne(address)) return this.refuse(socket);
    if (this.open.size >= this.limits.maxConnections && !this.evictOne(undefined)) return this.refuse(socket);
    this.open.set(socket, { socket, address, trusted: false });
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    socket.once("close", () => this.forget(socket));
  }

  /** A request on `socket` passed authentication: it is no longer evicted to make room. */
  trust(socket: Socket): void {
    const t = this.open.get(socket);
    if (t) t.trusted = true;
  }

  stats(): ConnectionStats {
    return { open: this.open.size, evicted: this.evicted, refused: this.refused };
  }

  private evictOne(address: string | undefined): boolean {
    for (const t of this.open.values()) {
      if (t.trusted || (address !== undefined && t.address !== address) || this.busy(t.socket)) continue;
      this.forget(t.socket); // counted out now: destroy() closes it asynchronously
      t.socket.destroy();
      this.evicted++;
      return true;
    }
    return false;
  }

  private refuse(socket: Socket): void {
    this.refused++;
    socket.destroy();
  }

  private forget(socket: Socket): void {
    const t = this.open.get(socket);
    if (!t) return;
    this.open.delete(socket);
    const n = (this.perAddress.get(t.address) ?? 1) - 1;
    if (n > 0) this.perAddress.set(t.address, n);
    else this.perAddress.delete(t.address);
  }
}
