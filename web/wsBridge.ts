/**
 * The bridge over a WebSocket (browser mode): the same function table as Electron's IPC. Calls are
 * validated (checkWireRequest) before dispatch; pushed events go to every connected page.
 *
 * Security: the server listens on loopback only, and an upgrade is accepted only from a page this
 * server served (Origin must equal its own origin, addressed by a loopback name), so another web site
 * open in the user's browser cannot drive the engine (cross-site WebSocket hijacking, DNS rebinding).
 */
import type { IncomingMessage, Server } from "node:http";
import { WebSocketServer, type WebSocket } from "ws";
import { callOp, checkWireRequest, MAX_WIRE_MESSAGE_BYTES, type BridgeApi, type BridgeEvent, type WireMessage } from "../shared/bridge.js";

export const BRIDGE_PATH = "/bridge";

/**
 * Most bytes of replies and events waiting for one page to read them. A page that sends calls and
 * never reads their replies (a flood of exportAll) would otherwise grow the engine's memory without
 * end; past this it is disconnected (a page that reconnects gets a fresh snapshot).
 */
export const MAX_BUFFERED_BYTES = 32 << 20;

export function attachWsBridge(server: Server, api: BridgeApi, subscribe: (l: (e: BridgeEvent) => void) => () => void): WebSocketServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WIRE_MESSAGE_BYTES });
  server.on("upgrade", (req, socket, head) => {
    // an event listener that throws is an uncaught exception: it would end the process
    try {
      if (!isBridgeUpgrade(req)) {
        socket.end("HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n");
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
    } catch {
      socket.destroy();
    }
  });
  wss.on("error", () => {}); // per-socket errors are handled on each socket; nothing here may end the process
  wss.on("connection", (ws: WebSocket) => {
    const send = (m: WireMessage) => {
      if (ws.readyState !== ws.OPEN) return;
      if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return void ws.terminate();
      try {
        ws.send(JSON.stringify(m));
      } catch (err) {
        // a value JSON cannot carry must not end the process; the page gets the failure instead
        if (m.kind === "result")
          ws.send(JSON.stringify({ kind: "result", id: m.id, ok: false, error: `Reply not serialisable: ${errorText(err)}` }));
      }
    };
    const unsubscribe = subscribe((event) => send({ kind: "event", event }));
    ws.on("close", unsubscribe);
    // invalid frames (bad UTF-8, oversized, bad opcodes) arrive as "error": unheard, it would be thrown
    ws.on("error", () => ws.terminate());
    ws.on("message", (data, isBinary) => {
      if (isBinary) return ws.close(1003, "text frames only");
      const checked = checkWireRequest(String(data));
      if (!checked.ok) {
        // the caller hears why before the socket closes (a page out of step with this host is not left waiting)
        if (checked.id !== null) send({ kind: "result", id: checked.id, ok: false, error: checked.error });
        return ws.close(1008, "malformed call");
      }
      const { call } = checked;
      // through a promise: an operation that throws synchronously is answered like one that rejects
      Promise.resolve()
        .then(() => callOp(api, call.op, call.arg))
        .then(
          (result) => send({ kind: "result", id: call.id, ok: true, result }),
          (err: unknown) => send({ kind: "result", id: call.id, ok: false, error: errorText(err) }),
        );
    });
  });
  return wss;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isBridgeUpgrade(req: IncomingMessage): boolean {
  try {
    return new URL(req.url ?? "/", "http://x").pathname === BRIDGE_PATH && sameOrigin(req);
  } catch {
    return false;
  }
}

function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (!origin || !host) return false;
  try {
    // DNS rebinding: a site whose name an attacker points at 127.0.0.1 passes the same-origin check
    // with its own name in both headers; the page must be addressed by a loopback name
    return new URL(origin).host === host && isLoopbackName(new URL(`http://${host}`).hostname);
  } catch {
    return false;
  }
}

function isLoopbackName(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}
