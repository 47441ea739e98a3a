/** A chat message as the user and the UI see it. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}
