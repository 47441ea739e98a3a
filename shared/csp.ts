/**
 * The renderer's Content Security Policy: sent as a header by browser mode (web/server.ts) and by the
 * Electron app's `app://` protocol (electron/appProtocol.ts), and carried by renderer/index.html as a
 * meta tag (without frame-ancestors, which a meta tag cannot carry). No inline script, nothing from elsewhere.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");
