/**
 * The bridge for browser mode: the same function table as Electron's preload, over a WebSocket to the
 * Node host (web/). Reconnects after the host restarts; the app re-reads its snapshot on "open".
 */
import {
  BRIDGE_OPS,
  type Bridge,
  type BridgeApi,
  type BridgeEvent,
  type BridgeListener,
  type WireMessage,
  type WireRequest,
} from "../../shared/bridge";

export type ConnectionListener = (state: "open" | "closed") => void;

export interface WsBridge extends Bridge {
  onConnection(l: ConnectionListener): () => void;
}

export function createWsBridge(url: string): WsBridge {
  const listeners = new Set<BridgeListener>();
  const connListeners = new Set<ConnectionListener>();
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let ws: WebSocket | null = null;
  let ready: Promise<WebSocket>;

  const connect = (): Promise<WebSocket> =>
    new Promise((resolve) => {
      const open = () => {
        const sock = new WebSocket(url);
        sock.onopen = () => {
          ws = sock;
          resolve(sock);
          connListeners.forEach((l) => l("open"));
        };
        sock.onmessage = (m) => {
          const msg = JSON.parse(String(m.data)) as WireMessage;
          if (msg.kind === "event") listeners.forEach((l) => l(msg.event));
          else {
            const p = pending.get(msg.id);
            pending.delete(msg.id);
            if (msg.ok) p?.resolve(msg.result);
            else p?.reject(new Error(msg.error));
          }
        };
        sock.onclose = () => {
          const wasOpen = ws === sock;
          ws = null;
          for (const p of pending.values()) p.reject(new Error("Lost the connection to the Tandem engine"));
          pending.clear();
          if (wasOpen) {
            connListeners.forEach((l) => l("closed"));
            ready = connect();
          } else setTimeout(open, 500); // the host is (re)starting: try again
        };
      };
      open();
    });
  ready = connect();

  const call = async (op: string, arg: unknown): Promise<unknown> => {
    const sock = ws ?? (await ready);
    const id = nextId++;
    const req: WireRequest = { kind: "call", id, op: op as WireRequest["op"], arg };
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      sock.send(JSON.stringify(req));
    });
  };

  // built from the run-time list of operations: nothing outside the table can be called
  const api = Object.fromEntries(BRIDGE_OPS.map((op) => [op, (arg: unknown) => call(op, arg ?? {})])) as unknown as BridgeApi;
  return {
    ...api,
    subscribe(l: BridgeListener) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    onConnection(l: ConnectionListener) {
      connListeners.add(l);
      return () => connListeners.delete(l);
    },
  };
}

export type { BridgeEvent };
