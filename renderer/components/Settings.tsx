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

export function Settings() {
  const settings = useSlice(
    (s) => s.session,
    (s) => s.settings,
  );
  return (
    <details className="settings" data-testid="settings">
      <summary>Settings</summary>
      {settings ? (
        <div className="settings-form">
          <CloudPart settings={settings} />
          <ContextPart settings={settings} />
          <SystemPart settings={settings} />
          <ModelPart settings={settings} />
        </div>
      ) : (
        <p className="muted">Reading the settings…</p>
      )}
    </details>
  );
}

/** One part's saving: busy while it runs, then its error, or "Saved" for a moment. */
function usePart() {
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (!saved) return;
    const t = setTimeout(() => setSaved(false), 2000);
    return () => clearTimeout(t);
  }, [saved]);
  const run = async (f: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
      setSaved(true);
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return { error, saved, busy, run };
}

/** A field's value that follows the saved one when that changes (saved here or elsewhere); edits stay until then. */
function useSavedValue<T>(saved: T): [T, (v: T) => void] {
  const [value, setValue] = useState(saved);
  const key = JSON.stringify(saved);
  // `key` stands for the saved value (a new object with the same content is no change)
  useEffect(() => setValue(JSON.parse(key) as T), [key]);
  return [value, setValue];
}

function CloudPart({ settings }: { settings: SettingsView }) {
  const { controller } = useApp();
  const part = usePart();
  const [kind, setKind] = useSavedValue<CloudSettingKind>(settings.cloud.kind);
  const [url, setUrl] = useSavedValue(settings.cloud.url);
  const [token, setToken] = useState("");
  const where = settings.tokenStorage === "keychain" ? "in the keychain" : "file readable by you only";
  return (
    <Group title="Cloud" name="cloud" part={part}>
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
          aria-invalid={!!part.error}
        />
      </label>
      <label>
        Token
        <input
          data-testid="settings-token"
          type="password"
          value={token}
          placeholder={settings.cloud.hasToken ? `saved (${where})` : "bearer token"}
          onChange={(e) => setToken(e.target.value)}
          disabled={kind === "none"}
          aria-invalid={!!part.error}
        />
      </label>
      <button
        data-testid="settings-connect"
        disabled={part.busy}
        onClick={() => void part.run(() => controller.setCloud({ kind, url, token }))}
      >
        Connect
      </button>
    </Group>
  );
}

function ContextPart({ settings }: { settings: SettingsView }) {
  const { controller } = useApp();
  const part = usePart();
  const [context, setContext] = useSavedValue(settings.contextSize === null ? "" : String(settings.contextSize));
  const loaded = settings.loadedContextSize;
  const save = () =>
    part.run(async () => {
      const text = context.trim();
      const n = Number(text);
      if (text && !Number.isInteger(n)) throw new Error("A whole number of tokens, or empty for the model's own");
      await controller.updateSettings({ contextSize: text ? n : null });
    });
  return (
    <Group title="Context size" name="context" part={part}>
      <label>
        Tokens (empty: the model&apos;s own)
        <input
          data-testid="settings-context"
          inputMode="numeric"
          value={context}
          placeholder={loaded ? `model's own (${loaded} now)` : "the model's own"}
          onChange={(e) => setContext(e.target.value)}
          aria-invalid={!!part.error}
        />
      </label>
      {loaded !== null && <div className="muted">Loaded: {loaded} tokens</div>}
      <button data-testid="settings-context-save" disabled={part.busy} onClick={() => void save()}>
        Save
      </button>
    </Group>
  );
}

function SystemPart({ settings }: { settings: SettingsView }) {
  const { controller } = useApp();
  const part = usePart();
  const [system, setSystem] = useSavedValue(settings.systemPrompt);
  return (
    <Group title="Default system prompt" name="system" part={part}>
      <textarea
        data-testid="settings-system"
        rows={3}
        value={system}
        placeholder="For conversations without their own"
        onChange={(e) => setSystem(e.target.value)}
        aria-label="default system prompt"
        aria-invalid={!!part.error}
      />
      <button
        data-testid="settings-system-save"
        disabled={part.busy}
        onClick={() => void part.run(() => controller.updateSettings({ systemPrompt: system }))}
      >
        Save
      </button>
    </Group>
  );
}

function ModelPart({ settings }: { settings: SettingsView }) {
  const { controller } = useApp();
  const part = usePart();
  const [gguf, setGguf] = useState("");
  return (
    <Group title="Local model" name="model" part={part}>
      {settings.slm && (
        <div className="muted path" title={settings.slm}>
          {settings.slm}
        </div>
      )}
      <label>
        GGUF path
        <input value={gguf} placeholder="/path/to/model.gguf" onChange={(e) => setGguf(e.target.value)} aria-invalid={!!part.error} />
      </label>
      <button disabled={part.busy || !gguf.trim()} onClick={() => void part.run(() => controller.openLocalModel(gguf.trim()))}>
        Open
      </button>
      {window.tandem && (
        <button disabled={part.busy} onClick={() => void part.run(async () => void (await controller.chooseLocalModel()))}>
          Choose file…
        </button>
      )}
    </Group>
  );
}

/** One part of the form, with its error (or a brief "Saved") right under it. */
function Group({ title, name, part, children }: { title: string; name: string; part: ReturnType<typeof usePart>; children: ReactNode }) {
  return (
    <fieldset className="settings-group" data-testid={`settings-part-${name}`}>
      <legend>{title}</legend>
      {children}
      {part.error && (
        <div className="field-error" role="alert" data-testid={`settings-error-${name}`}>
          {part.error}
        </div>
      )}
      {part.saved && !part.error && (
        <div className="field-saved" role="status">
          Saved
        </div>
      )}
    </fieldset>
  );
}
