/** Layout and the global keys: Esc stops the answer (or closes the inspector), Cmd/Ctrl+N starts a new chat. */
import { useEffect } from "react";
import { useApp, useSlice } from "../context";
import { selectActiveConversation } from "../state/chatReducer";
import { Composer } from "./Composer";
import { ErrorBoundary } from "./ErrorBoundary";
import { Inspector } from "./Inspector";
import { ModelSetup } from "./ModelSetup";
import { MessageList } from "./Messages";
import { SamplingBar } from "./SamplingPanel";
import { Sidebar } from "./Sidebar";
import { TopBar } from "./TopBar";
import { CloudPanel } from "./CloudPanel";

export function App() {
  const { controller, stores } = useApp();
  const showOrigins = useSlice(
    (s) => s.ui,
    (s) => s.showOrigins,
  );
  const conv = useSlice((s) => s.chat, selectActiveConversation);
  const notices = useSlice(
    (s) => s.session,
    (s) => s.notices,
  );
  const connected = useSlice(
    (s) => s.session,
    (s) => s.connected,
  );
  const needsModel = useSlice(
    (s) => s.session,
    (s) => !!s.models && !s.models.slm.loaded && (!s.models.slm.source || !!s.models.slm.error),
  );

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") {
        if (stores.chat.getState().streaming) void controller.stop();
        else stores.ui.setState({ pinned: null, hovered: null });
      } else if ((e.metaKey || e.ctrlKey) && !e.shiftKey && e.key.toLowerCase() === "n") {
        e.preventDefault();
        void controller.newChat();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [controller, stores]);

  return (
    <div className={`app${showOrigins ? "" : " origins-hidden"}`}>
      <ErrorBoundary what="the conversation list">
        <Sidebar />
      </ErrorBoundary>
      <main className="main">
        <ErrorBoundary what="the top bar">
          <TopBar />
        </ErrorBoundary>
        <ErrorBoundary what="the cloud controls">
          <CloudPanel />
        </ErrorBoundary>
        {!connected && (
          <div className="banner warn" data-testid="disconnected">
            Connecting to the Tandem engine…
          </div>
        )}
        {notices.length > 0 && (
          <div className="banner" data-testid="notices" role="status">
            {notices.slice(-3).map((n, i) => (
              <div key={`${notices.length}-${i}`} className="notice">
                {n}
                <button
                  className="icon-button"
                  aria-label="dismiss"
                  onClick={() => stores.session.setState((s) => ({ notices: s.notices.filter((x) => x !== n) }))}
                >
                  ×
                </button>
              </div>
            ))}
          </div>
        )}
        <div className="chat">
          <ErrorBoundary what="this conversation" resetKey={conv?.id}>
            {needsModel ? <ModelSetup /> : conv ? <MessageList conversation={conv} /> : <Welcome />}
          </ErrorBoundary>
        </div>
        <ErrorBoundary what="the sampling settings" resetKey={conv?.id}>
          <SamplingBar />
        </ErrorBoundary>
        <ErrorBoundary what="the message box">
          <Composer />
        </ErrorBoundary>
      </main>
      <ErrorBoundary what="the inspector" resetKey={conv?.id}>
        <Inspector />
      </ErrorBoundary>
    </div>
  );
}

function Welcome() {
  return (
    <div className="welcome">
      <h1>Tandem</h1>
      <p>A small model on this computer writes the answer; where it is unsure, a large model in the cloud picks the token.</p>
      <p className="muted">Move τ to choose how often the cloud steps in. Every token shows where it came from.</p>
    </div>
  );
}
