/**
 * Text from outside the program (model output, model metadata, a server's error message) reaching a
 * terminal: escape sequences in it could retitle the window, clear the screen, move the cursor over a
 * forged password prompt or hide a link. Every control character except newline and tab is shown as a
 * visible escape instead (C0, DEL and the C1 range, where U+009B is a one-character CSI).
 */

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

const visible = (c: string): string => `\\x${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`;

/** `text` with every control character but "\n" and "\t" made visible (e.g. ESC → `\x1B`). */
export function terminalSafe(text: string): string {
  return text.replace(CONTROL, visible);
}

/**
 * JSON for a terminal or a pipe: JSON.stringify already escapes C0 controls, but not DEL or C1; they
 * are escaped here too, which keeps the line valid JSON that parses to the same value.
 */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
