/**
 * One part of the window that fails to render (a conversation the engine should have refused, a bug)
 * shows what went wrong in its place; the rest — the sidebar above all, to reach other conversations —
 * keeps working. `resetKey` changing (another conversation opened) tries the part again.
 */
import { Component, type ReactNode } from "react";
import { errorMessage } from "../../shared/errors";

interface Props {
  /** what the part is, for the message: "this conversation", "the inspector" */
  what: string;
  resetKey?: unknown;
  children: ReactNode;
}

interface State {
  error: unknown;
  key: unknown;
}

export class ErrorBoundary extends Component<Props, State> {
  override state: State = { error: null, key: this.props.resetKey };

  static getDerivedStateFromError(error: unknown): Partial<State> {
    return { error: error ?? new Error("unknown error") };
  }

  static getDerivedStateFromProps(props: Props, state: State): Partial<State> | null {
    return props.resetKey !== state.key ? { error: null, key: props.resetKey } : null;
  }

  override render(): ReactNode {
    if (!this.state.error) return this.props.children;
    return (
      <div className="banner warn" role="alert" data-testid="render-error">
        Tandem could not show {this.props.what}: {errorMessage(this.state.error)}.{" "}
        <button onClick={() => this.setState({ error: null })}>Try again</button>
      </div>
    );
  }
}
