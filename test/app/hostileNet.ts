/** Unhelpful network peers for the hostile-settings tests: nothing listening, a server that never answers, one that records. */
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";

/** A loopback port nothing listens on (bound, then closed): connections are refused at once. */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Peer {
  url: string;
  close(): Promise<void>;
}

/** Accepts TCP connections and never sends a byte: only a deadline gets a client out. */
export async function startSilentServer(): Promise<Peer> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("error", () => {});
    sock.on("close", () => sockets.delete(sock));
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    close: async () => {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

/** Answers every request 404 and remembers the Authorization header each one carried. */
export async function startRecordingServer(): Promise<Peer & { authorizations: (string | undefined)[] }> {
  const authorizations: (string | undefined)[] = [];
  const s = http.createServer((req, res) => {
    authorizations.push(req.headers.authorization);
    req.resume();
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"code":"not_found","message":"nothing here"}}');
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    authorizations,
    close: async () => {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

/** Cloud settings that can never work, with the message each must give (the app and the CLI share them). */
export const INVALID_CLOUD_SETTINGS: { what: string; url: string; token: string; error: RegExp }[] = [
  { what: "no URL", url: "   ", token: "", error: /No cloud URL/ },
  { what: "garbage", url: "not a url", token: "", error: /"not a url" is not a URL/ },
  { what: "a space in the host", url: "http://exa mple.com:8788", token: "", error: /is not a URL/ },
  { what: "a scheme and nothing else", url: "http://", token: "", error: /is not a URL/ },
  { what: "ftp", url: "ftp://files.example.com/model", token: "", error: /must start with http:\/\/ or https:\/\/ \(not ftp:\)/ },
  { what: "javascript:", url: "javascript:alert(1)", token: "", error: /must start with http:\/\/ or https:\/\/ \(not javascript:\)/ },
  { what: "file:", url: "file:///etc/passwd", token: "", error: /must start with http:\/\/ or https:\/\/ \(not file:\)/ },
  { what: "credentials in the URL", url: "http://user:secret@127.0.0.1:8788", token: "", error: /token field, not in the cloud URL/ },
  { what: "a query string", url: "http://127.0.0.1:8788/?token=x", token: "", error: /must not have a query/ },
  { what: "a 5,000-character URL", url: `http://${"a".repeat(5000)}.example`, token: "", error: /too long \(5015 characters\)/ },
  { what: "a short token", url: "http://127.0.0.1:8788", token: "abc123", error: /too short \(6 characters\).*at least 16/ },
  {
    what: "a token with a space",
    url: "http://127.0.0.1:8788",
    token: "correct horse battery staple",
    error: /printable ASCII without spaces/,
  },
  {
    what: "a token with a line break (header injection)",
    url: "http://127.0.0.1:8788",
    token: "0123456789abcdef\r\nX-Evil: 1",
    error: /printable ASCII without spaces/,
  },
  { what: "a non-ASCII token", url: "http://127.0.0.1:8788", token: "jeton-sécurisé-0123456789", error: /printable ASCII/ },
];
