/**
 * The renderer's state: zustand *vanilla* stores (no React in here, so they are unit-tested in Node),
 * read by components through selectors. Three stores, each changing for its own reasons:
 *   chat    — conversations and the streaming answer (a pure reducer, chatReducer.ts)
 *   session — τ, model and cloud status, live statistics, notices, the bridge connection
 *   ui      — what the user is looking at: the inspected token, source view per answer, display settings
 */
import { createStore, type StoreApi } from "zustand/vanilla";
import type { CloudStatus, LiveStats, ModelStatus, SettingsView } from "../../shared/bridge";
import { chatReducer, initialChatState, type ChatAction, type ChatState } from "./chatReducer";

export interface ChatStore extends ChatState {
  dispatch(action: ChatAction): void;
}

export function createChatStore(): StoreApi<ChatStore> {
  return createStore<ChatStore>()((set, get) => ({
    ...initialChatState,
    dispatch: (action) => {
      const { dispatch: _dispatch, ...state } = get();
      set(chatReducer(state, action));
    },
  }));
}

export interface SessionState {
  connected: boolean;
  tau: number;
  models: ModelStatus | null;
  cloud: CloudStatus | null;
  stats: LiveStats | null;
  notices: string[];
  /** the settings in effect (saved values, command-line overrides), for the Settings form */
  settings: SettingsView | null;
}

export function createSessionStore(): StoreApi<SessionState> {
  return createStore<SessionState>()(() => ({
    connected: false,
    tau: 0.5,
    models: null,
    cloud: null,
    stats: null,
    notices: [],
    settings: null,
  }));
}

export interface TokenRef {
  messageId: string;
  index: number;
}

export interface UiState {
  /** the token under the pointer */
  hovered: TokenRef | null;
  /** the token clicked: stays in the inspector until another click */
  pinned: TokenRef | null;
  /** per finished answer: show its raw token source instead of the rendered Markdown */
  tokenView: Record<string, boolean>;
  /** the user message being edited */
  editing: string | null;
  /** bumped to put the focus in the message box (New chat) */
  composerFocus: number;
  /** app-wide: colour every token by its origin (local / cloud / fallback) */
  showOrigins: boolean;
  theme: Theme;
}

export type Theme = "system" | "light" | "dark";
export const THEMES: readonly Theme[] = ["system", "light", "dark"];

/** The display settings kept across sessions (localStorage in the renderer). */
export type DisplaySettings = Pick<UiState, "showOrigins" | "theme">;
export const defaultDisplay: DisplaySettings = { showOrigins: true, theme: "system" };

/** Display settings read back from storage: anything malformed falls back to the default. */
export function parseDisplaySettings(raw: string | null): DisplaySettings {
  try {
    const v = JSON.parse(raw ?? "{}") as Partial<Record<keyof DisplaySettings, unknown>>;
    return {
      showOrigins: typeof v.showOrigins === "boolean" ? v.showOrigins : defaultDisplay.showOrigins,
      theme: THEMES.includes(v.theme as Theme) ? (v.theme as Theme) : defaultDisplay.theme,
    };
  } catch {
    return { ...defaultDisplay };
  }
}

export function createUiStore(display: DisplaySettings = defaultDisplay): StoreApi<UiState> {
  return createStore<UiState>()(() => ({ hovered: null, pinned: null, tokenView: {}, editing: null, composerFocus: 0, ...display }));
}

/** The inspected token: the hovered one wins over the pinned one while the pointer is on a token. */
export const selectInspected = (s: UiState): TokenRef | null => s.hovered ?? s.pinned;

export interface Stores {
  chat: StoreApi<ChatStore>;
  session: StoreApi<SessionState>;
  ui: StoreApi<UiState>;
}

export function createStores(display?: DisplaySettings): Stores {
  return { chat: createChatStore(), session: createSessionStore(), ui: createUiStore(display) };
}
