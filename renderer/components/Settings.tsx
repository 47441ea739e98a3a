/** Cloud settings (kind, URL, token) and opening a local GGUF as the device model. */
import { useState } from "react";
import type { CloudSettingKind } from "../../shared/bridge";
import { useApp, useSlice } from "../context";
import { errorMessage } from "../../shared/errors.js";

export function Settings() {
  const { stores } = useApp();
  const cloud = useSlice(
    (s) => s.session,
    (s) => s.cloud,
  );
  const [kind, setKind] = useState<CloudSettingKind>(cloud?.kind ?? "tandem");
  const [url, setUrl] = useState(cloud?.url ?? "");
  const [token, setToken] = useState("");
  const [gguf, setGguf] = useState("");
  const [busy, setBusy] = useState(false);
  const bridge = useApp().controller;
  const note = (m: string) => stores.session.setState((s) => ({ notices: [...s.notices, m] }));

  const run = async (f: () => Promise<unknown>) => {
    setBusy(true);
    try {
      await f();
    } catch (e) {
      note(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <details className="settings" data-testid="settings">
      <summary>Settings</summary>
      <label>
        Cloud
        <select data-testid="settings-kind" value={kind} onChange={(e) => setKind(e.target.value as CloudSettingKind)}>
          <option value="tandem">Tandem token server</option>
          <option value="none">None (local only)</option>
        </select>
      </label>
      <label>
        URL
        <input
          data-testid="settings-url"
          value={url}
          placeholder="http://127.0.0.1:8788"
          onChange={(e) => setUrl(e.target.value)}
          disabled={kind === "none"}
        />
      </label>
      <label>
        Token
        <input
          data-testid="settings-token"
          type="password"
          value={token}
          placeholder={cloud?.hasToken ? "(saved)" : "bearer token"}
          onChange={(e) => setToken(e.target.value)}
          disabled={kind === "none"}
        />
      </label>
      <button data-testid="settings-connect" disabled={busy} onClick={() => void run(() => bridge.setCloud({ kind, url, token }))}>
        Connect
      </button>
      <label>
        Local model (GGUF path)
        <input value={gguf} placeholder="/path/to/model.gguf" onChange={(e) => setGguf(e.target.value)} />
      </label>
      <button disabled={busy || !gguf.trim()} onClick={() => void run(() => bridge.openLocalModel(gguf.trim()))}>
        Open
      </button>
      {window.tandem && (
        <button disabled={busy} onClick={() => void run(async () => void (await bridge.chooseLocalModel()))}>
          Choose file…
        </button>
      )}
    </details>
  );
}
