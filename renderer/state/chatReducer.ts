/**
 * The chat state and its pure reducer: conversations, the open one, and the answer streaming in.
 * Token deltas append to the streaming message (new arrays, so React selectors see the change; old
 * messages keep their identity and do not re-render).
 */
import type { BridgeEvent, Conversation, ConversationMeta, StoredMessage } from "../../shared/bridge";

export interface Streaming {
  requestId: string;
  conversationId: string;
  messageId: string;
}

export interface ChatState {
  conversations: ConversationMeta[];
  /** loaded conversations by id */
  loaded: Record<string, Conversation>;
  activeId: string | null;
  streaming: Streaming | null;
  /** the last error of an answer, shown under it */
  lastError: string | null;
}

export const initialChatState: ChatState = { conversations: [], loaded: {}, activeId: null, streaming: null, lastError: null };

export type ChatAction =
  | { type: "conversations"; conversations: ConversationMeta[] }
  | { type: "loaded"; conversation: Conversation }
  | { type: "select"; id: string | null }
  | { type: "removed"; id: string }
  | { type: "streaming"; streaming: Streaming | null }
  | { type: "bridge"; event: BridgeEvent };

export function chatReducer(state: ChatState, action: ChatAction): ChatState {
  switch (action.type) {
    case "conversations": {
      const stillThere = new Set(action.conversations.map((c) => c.id));
      const activeId = state.activeId && stillThere.has(state.activeId) ? state.activeId : null;
      return { ...state, conversations: action.conversations, activeId };
    }
    case "loaded":
      return { ...state, loaded: { ...state.loaded, [action.conversation.id]: action.conversation } };
    case "select":
      return { ...state, activeId: action.id };
    case "removed": {
      const { [action.id]: _gone, ...loaded } = state.loaded;
      return {
        ...state,
        loaded,
        conversations: state.conversations.filter((c) => c.id !== action.id),
        activeId: state.activeId === action.id ? null : state.activeId,
      };
    }
    case "streaming":
      return { ...state, streaming: action.streaming };
    case "bridge":
      return onBridgeEvent(state, action.event);
  }
}

function onBridgeEvent(state: ChatState, e: BridgeEvent): ChatState {
  switch (e.type) {
    case "conversations":
      return chatReducer(state, { type: "conversations", conversations: e.conversations });
    case "answer-start": {
      const { conversationId, messageId, requestId } = e.handle;
      const streaming = { requestId, conversationId, messageId };
      const conv = state.loaded[conversationId];
      if (!conv) return { ...state, streaming, lastError: null };
      // where the answered message sits: given by the engine (a new branch has a new id), else found by id
      const i = e.at ?? conv.messages.findIndex((m) => m.id === e.user.id);
      const before = i >= 0 ? conv.messages.slice(0, i) : conv.messages;
      const answer: StoredMessage = e.answer ?? { id: messageId, role: "assistant", content: "", createdAt: Date.now(), tokens: [] };
      const messages = [...before, e.user, answer];
      return { ...state, streaming, lastError: null, loaded: { ...state.loaded, [conversationId]: { ...conv, messages } } };
    }
    case "answer-delta":
      return updateMessage(state, e.conversationId, e.messageId, (m) => ({
        ...m,
        tokens: [...(m.tokens ?? []), ...e.tokens],
        content: m.content + e.tokens.map((t) => t.text).join(""),
      }));
    case "answer-end": {
      const next = updateMessage(state, e.conversationId, e.message.id, () => e.message);
      return { ...next, streaming: state.streaming?.requestId === e.requestId ? null : state.streaming };
    }
    case "answer-error": {
      const next = updateMessage(state, e.conversationId, e.messageId, (m) => ({ ...m, status: "error", error: e.error }));
      return { ...next, lastError: e.error, streaming: state.streaming?.requestId === e.requestId ? null : state.streaming };
    }
    default:
      return state;
  }
}

function updateMessage(state: ChatState, conversationId: string, messageId: string, f: (m: StoredMessage) => StoredMessage): ChatState {
  const conv = state.loaded[conversationId];
  if (!conv) return state;
  const i = conv.messages.findIndex((m) => m.id === messageId);
  if (i < 0) return state;
  const messages = conv.messages.slice();
  messages[i] = f(messages[i]);
  return { ...state, loaded: { ...state.loaded, [conversationId]: { ...conv, messages } } };
}

// ---------------------------------------------------------------------------------------------------
// Selectors

export const selectActiveConversation = (s: ChatState): Conversation | null => (s.activeId ? (s.loaded[s.activeId] ?? null) : null);

export const selectIsStreaming = (s: ChatState): boolean => s.streaming !== null;
