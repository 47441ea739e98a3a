/** A chat message as the user and the UI see it. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/**
 * How much of the SLM's context window an answer's prompt takes (electron/engine/contextWindow.ts):
 * what a context meter shows, and whether older turns were left out.
 */
export interface ContextUsage {
  /** prompt tokens read for this answer (the answer's own tokens come on top) */
  used: number;
  /** the SLM's context size, tokens */
  window: number;
  /** tokens kept free for the answer */
  reserved: number;
  /** older messages of the conversation the models no longer read (0: the whole conversation fits) */
  droppedMessages: number;
  /** the window moved for this answer (the kept text was read again) */
  slid: boolean;
  /** the newest message alone was longer than the window: only its end was read */
  truncated: boolean;
}
