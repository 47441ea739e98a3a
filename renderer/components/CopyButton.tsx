/** A Copy button: puts a text on the clipboard and says so for a moment (or that the browser refused). */
import { useState } from "react";

export function CopyButton({ text, label, className, testId }: { text: () => string; label: string; className?: string; testId?: string }) {
  const [state, setState] = useState<"idle" | "copied" | "failed">("idle");
  const copy = () => {
    const done = (s: "copied" | "failed") => {
      setState(s);
      setTimeout(() => setState("idle"), 1200);
    };
    if (!navigator.clipboard) return done("failed"); // not a secure context
    navigator.clipboard.writeText(text()).then(
      () => done("copied"),
      () => done("failed"),
    );
  };
  return (
    <button type="button" className={className} data-testid={testId} onClick={copy} aria-label={label} title={label}>
      {state === "copied" ? "Copied" : state === "failed" ? "Copy failed" : "Copy"}
    </button>
  );
}
