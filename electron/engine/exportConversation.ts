/**
 * Conversation export. JSON keeps every token with its origin and router data (the full record);
 * Markdown is for reading: each answer's text plus a one-line summary of where its tokens came from.
 */
import type { Conversation, ExportedConversation, ExportFormat } from "../../shared/bridge.js";
import { countOrigins } from "../../shared/events.js";
import { describeSettings } from "../../shared/samplingText.js";

export function exportConversation(c: Conversation, format: ExportFormat): ExportedConversation {
  const base = slug(c.title) || "conversation";
  if (format === "json") {
    return {
      filename: `${base}.json`,
      mime: "application/json",
      content: JSON.stringify({ format: "tandem-conversation", version: 1, conversation: c }, null, 2),
    };
  }
  const lines: string[] = [`# ${c.title}`, ""];
  for (const m of c.messages) {
    lines.push(m.role === "user" ? "## You" : "## Tandem", "", m.content, "");
    if (m.role === "assistant" && m.tokens?.length) {
      const n = countOrigins(m.tokens);
      const share = ((100 * n.cloudTokens) / n.tokens).toFixed(1);
      lines.push(
        `> ${n.tokens} tokens · ${n.cloudTokens} from the cloud (${share}%) · ${n.fallbackTokens} fallback${m.status === "stopped" ? " · stopped" : ""}`,
        ...(m.sampling ? [">", `> sampled: ${describeSettings(m.sampling)}`] : []),
        "",
      );
    }
  }
  return { filename: `${base}.md`, mime: "text/markdown", content: lines.join("\n") };
}

function slug(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 60);
}
