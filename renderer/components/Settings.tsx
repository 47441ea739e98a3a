/**
 * The settings form: what is in effect now (saved in the data folder, or given on the command line),
 * each part saved on its own, its error beside it. The cloud (kind, URL, token), the context size, the
 * default system prompt, and opening a local GGUF as the device model. τ is in the top bar, the theme
 * in its ⋯ menu; both are saved too.
 */
import { useEffect, useState, type ReactNode } from "react";
import type { CloudSettingKind, SettingsView } from "../../shared/bridge";
import { useApp, useSlice } from "../context";
import { errorMessage } from "../../shared/errors.js";

type Part = "cloud" | "context" | "system" | "model";

export function Settings() {
  const settings = useSlice(
    (s) => s.session,
    (s) => s.settings,
  );
  return (
    <details className="settings" data-testid="settings">
      <summary>Settings</summary>
      {settings ? <SettingsForm settings={settings} /> : <p className="muted">Reading the settings…</p>}
    </details>
  );
}

/** The saved values the form shows: when they change (saved here, or elsewhere), the fields follow. */
const settingsKey = (s: SettingsView) => JSON.stringify([s.cloud, s.contextSize, s.systemPrompt, s.slm]);

function SettingsForm({ settings }: { settings: SettingsView }) {
  const { controller } = useApp();
  const [kind, setKind] = useState<CloudSettingKind>(settings.cloud.kind);
  const [url, setUrl] = useState(settings.cloud.url);
  const [token, setToken] = useState("");
  const [context, setContext] = useState(settings.contextSize === null ? "" : String(settings.contextSize));
  const [system, setSystem] = useState(settings.systemPrompt);
  const [gguf, setGguf] = useState("");
  const [errors, setErrors] = useState<Partial<Record<Part, string>>>({});
  const [saved, setSaved] = useState<Part | null>(null);
  const [busy, setBusy] = useState(false);
  const key = settingsKey(settings);
  useEffect(() => {
    setKind(settings.cloud.kind);
    setUrl(settings.cloud.url);
    setContext(settings.contextSize === null ? "" : String(settings.contextSize));
    setSystem(settings.systemPrompt);
    // `key` stands for the saved values: unsaved edits stay until those change
  }, [key]);
  useEffect(() => {
    if (!saved) return;
    const t = setTimeout(() => setSaved(null), 2000);
    return () => clearTimeout(t);
  }, [saved]);

  const run = async (part: Part, f: () => Promise<unknown>) => {
    setBusy(true);
    setErrors((e) => ({ ...e, [part]: undefined }));
    try {
      await f();
      setSaved(part);
    } catch (e) {
      setErrors((x) => ({ ...x, [part]: errorMessage(e) }));
    } finally {
      setBusy(false);
    }
  };
  const saveContext = () =>
    run("context", async () => {
      const text = context.trim();
      const n = Number(text);
      if (text && !Number.isInteger(n)) throw new Error("A whole number of tokens, or empty for the model's own");
      await controller.updateSettings({ contextSize: text ? n : null });
    });
  const loaded = settings.loadedContextSize;

  return (
    <div className="settings-form">
      <Group title="Cloud" part="cloud" error={errors.cloud} saved={saved === "cloud"}>
        <label>
          Kind
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
            aria-invalid={!!errors.cloud}
          />
        </label>
        <label>
          Token
          <input
            data-testid="settings-token"
            type="password"
            value={token}
            placeholder={
              settings.cloud.hasToken
                ? `saved (${settings.tokenStorage === "keychain" ? "in the keychain" : "file readable by you only"})`
                : "bearer token"
            }
            onChange={(e) => setToken(e.target.value)}
            disabled={kind === "none"}
            aria-invalid={!!errors.cloud}
          />
        </label>
        <button
          data-testid="settings-connect"
          disabled={busy}
          onClick={() => void run("cloud", () => controller.setCloud({ kind, url, token }))}
        >
          Connect
        </button>
      </Group>
      <Group title="Context size" part="context" error={errors.context} saved={saved === "context"}>
        <label>
          Tokens (empty: the model&apos;s own)
          <input
            data-testid="settings-context"
            inputMode="numeric"
            value={context}
            placeholder={loaded ? `model's own (${loaded} now)` : "the model's own"}
            onChange={(e) => setContext(e.target.value)}
            aria-invalid={!!errors.context}
          />
        </label>
        {loaded !== null && <div className="muted">Loaded: {loaded} tokens</div>}
        <button data-testid="settings-context-save" disabled={busy} onClick={() => void saveContext()}>
          Save
        </button>
      </Group>
      <Group title="Default system prompt" part="system" error={errors.system} saved={saved === "system"}>
        <textarea
          data-testid="settings-system"
          rows={3}
          value={system}
          placeholder="For conversations without their own"
          onChange={(e) => setSystem(e.target.value)}
          aria-label="default system prompt"
          aria-invalid={!!errors.system}
        />
        <button
          data-testid="settings-system-save"
          disabled={busy}
          onClick={() => void run("system", () => controller.updateSettings({ systemPrompt: system }))}
        >
          Save
        </button>
      </Group>
      <Group title="Local model" part="model" error={errors.model} saved={saved === "model"}>
        {settings.slm && (
          <div className="muted path" title={settings.slm}>
            {settings.slm}
          </div>
        )}
        <label>
          GGUF path
          <input value={gguf} placeholder="/path/to/model.gguf" onChange={(e) => setGguf(e.target.value)} aria-invalid={!!errors.model} />
        </label>
        <button disabled={busy || !gguf.trim()} onClick={() => void run("model", () => controller.openLocalModel(gguf.trim()))}>
          Open
        </button>
        {window.tandem && (
          <button disabled={busy} onClick={() => void run("model", async () => void (await controller.chooseLocalModel()))}>
            Choose file…
          </button>
        )}
      </Group>
    </div>
  );
}

/** One part of the form, with its error (or a brief "Saved") right under it. */
function Group({
  title,
  part,
  error,
  saved,
  children,
}: {
  title: string;
  part: Part;
  error?: string;
  saved: boolean;
  children: ReactNode;
}) {
  return (
    <fieldset className="settings-group" data-testid={`settings-part-${part}`}>
      <legend>{title}</legend>
      {children}
      {error && (
        <div className="field-error" role="alert" data-testid={`settings-error-${part}`}>
          {error}
        </div>
      )}
      {saved && !error && (
        <div className="field-saved" role="status">
          Saved
        </div>
      )}
    </fieldset>
  );
}
