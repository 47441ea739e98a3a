/**
 * The user's cloud controls and what the cloud has been shown, kept in the data folder as
 * `cloud-control.json` (replaced atomically; a file that cannot be read is set aside with a notice):
 *
 *   settings       target share (null: τ rules), local-only default for new conversations, budgets
 *   conversations  per conversation: local-only, and what the cloud has seen of it (`CloudSeen`)
 *   days           cloud tokens and bytes up per UTC day, for the daily budgets (the last week kept)
 */
import { readFile, rename } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../atomicFile.js";
import type { CloudStats } from "../cloud/peer.js";
import type { CloudGate } from "./guardedPeer.js";
import {
  CloudSeenSchema,
  ControlSettingsSchema,
  count,
  type Budgets,
  type CloudSeen,
  type ControlSettings,
} from "../../../shared/cloudControl.js";

export type { Budgets, CloudSeen, ControlSettings };

export const CONTROL_FILE = "cloud-control.json";
const MAX_FILE_BYTES = 8 << 20;
const MAX_CONVERSATIONS = 10_000;
const DAYS_KEPT = 7;

const ConversationSchema = z.object({ localOnly: z.boolean(), seen: CloudSeenSchema });
const DaySchema = z.object({ cloudTokens: count, bytesUp: count });

const FileSchema = z.object({
  version: z.literal(1),
  settings: ControlSettingsSchema,
  conversations: z.record(z.string().max(256), ConversationSchema),
  days: z.record(z.string().regex(/^\d{4}-\d{2}-\d{2}$/), DaySchema),
});
type ControlFile = z.infer<typeof FileSchema>;

export const DEFAULT_CONTROL: ControlSettings = {
  targetShare: null,
  localOnlyDefault: false,
  budgets: { conversationTokens: null, dayTokens: null, dayBytesUp: null },
};

export const emptySeen = (): CloudSeen => ({
  tokensUp: 0,
  cloudTokens: 0,
  bytesUp: 0,
  bytesDown: 0,
  server: null,
  model: null,
  sessionId: null,
  forgottenAt: null,
});

export const today = (now = Date.now()): string => new Date(now).toISOString().slice(0, 10);

export class CloudControlStore {
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    private readonly file: string | null,
    private data: ControlFile,
    readonly notices: string[] = [],
    /** the defaults are in use: no file yet (a fresh install, or controls never changed), or one set aside */
    readonly fresh = false,
  ) {}

  static inMemory(): CloudControlStore {
    return new CloudControlStore(null, blank());
  }

  static async open(dataDir: string): Promise<CloudControlStore> {
    const file = path.join(dataDir, CONTROL_FILE);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return new CloudControlStore(file, blank(), [], true);
      return new CloudControlStore(
        file,
        blank(),
        [`Could not read the cloud controls (${(err as Error).message}); defaults are used.`],
        true,
      );
    }
    const ok = FileSchema.safeParse(text.length <= MAX_FILE_BYTES ? safeJson(text) : undefined);
    if (ok.success) return new CloudControlStore(file, ok.data);
    const aside = `${file}.corrupt-${Date.now()}`;
    await rename(file, aside).catch(() => {});
    return new CloudControlStore(
      file,
      blank(),
      [`The cloud controls could not be read; the file was set aside as ${path.basename(aside)} and defaults are used.`],
      true,
    );
  }

  get settings(): ControlSettings {
    return structuredClone(this.data.settings);
  }

  get targetShare(): number | null {
    return this.data.settings.targetShare;
  }

  /**
   * The settings a fresh install starts with (the app's defaults), in memory only: the file is
   * written when the user first changes a control, so until then every start begins the same way.
   */
  startWith(s: Partial<ControlSettings>): void {
    if (this.fresh) this.data.settings = ControlSettingsSchema.parse({ ...this.data.settings, ...s });
  }

  /** Replaces the settings (checked by the caller with ControlSettingsSchema). */
  setSettings(s: ControlSettings): Promise<void> {
    this.data.settings = structuredClone(s);
    return this.save();
  }

  localOnly(conversationId: string): boolean {
    return this.data.conversations[conversationId]?.localOnly ?? false;
  }

  setLocalOnly(conversationId: string, localOnly: boolean): Promise<void> {
    this.entry(conversationId).localOnly = localOnly;
    return this.save();
  }

  seen(conversationId: string): CloudSeen {
    return structuredClone(this.data.conversations[conversationId]?.seen ?? emptySeen());
  }

  /** Adds an answer's traffic to what the cloud has seen of the conversation, and to the day's bytes. */
  recordSeen(conversationId: string, add: Omit<CloudSeen, "forgottenAt" | "cloudTokens">): Promise<void> {
    const s = this.entry(conversationId).seen;
    s.tokensUp += add.tokensUp;
    s.bytesUp += add.bytesUp;
    s.bytesDown += add.bytesDown;
    s.server = add.server ?? s.server;
    s.model = add.model ?? s.model;
    s.sessionId = add.sessionId ?? s.sessionId;
    this.day().bytesUp += add.bytesUp;
    return this.save();
  }

  /** The server confirmed it holds nothing of the conversation any more. */
  forgotten(conversationId: string, at = Date.now()): Promise<void> {
    const s = this.entry(conversationId).seen;
    s.sessionId = null;
    s.forgottenAt = at;
    return this.save();
  }

  /** A deleted conversation leaves no entry. */
  drop(conversationId: string): Promise<void> {
    delete this.data.conversations[conversationId];
    return this.save();
  }

  /** Today's use: cloud tokens and bytes up. */
  usageToday(): { cloudTokens: number; bytesUp: number } {
    return { ...(this.data.days[today()] ?? { cloudTokens: 0, bytesUp: 0 }) };
  }

  /**
   * The limits of one answer in `conversationId`: local-only, and budgets charged as the cloud's
   * tokens come back (GuardedPeer). `bytesAtStart` is the peer's byte counter when the answer began.
   */
  gate(conversationId: string, bytesAtStart: number): CloudGate {
    // read live at every call, never captured at the answer's start: local-only or a lower budget set
    // while an answer streams holds from its next call
    const budgets = () => this.data.settings.budgets;
    const conv = () => this.entry(conversationId).seen;
    const left = (capValue: number | null, used: number) => (capValue === null ? Infinity : Math.max(0, capValue - used));
    const localOnly = () => this.localOnly(conversationId);
    return {
      get localOnly() {
        return localOnly();
      },
      tokensLeft: () => Math.min(left(budgets().conversationTokens, conv().cloudTokens), left(budgets().dayTokens, this.day().cloudTokens)),
      bytesExhausted: (stats: Readonly<CloudStats>) =>
        budgets().dayBytesUp !== null && this.day().bytesUp + (stats.bytesUp - bytesAtStart) >= budgets().dayBytesUp!,
      charge: (tokens: number) => {
        conv().cloudTokens += tokens;
        this.day().cloudTokens += tokens;
      },
      budgetMessage: (reserved: number) =>
        budgetMessage(budgets(), conv().cloudTokens + reserved, { ...this.day(), cloudTokens: this.day().cloudTokens + reserved }),
    };
  }

  /** Writes the file in the background, in order; resolves when written (errors are the caller's notice). */
  save(): Promise<void> {
    if (!this.file) return Promise.resolve();
    const file = this.file;
    const data = JSON.stringify(this.data);
    const next = this.saving.then(() => writeFileAtomic(file, data));
    this.saving = next.catch(() => {});
    return next;
  }

  private entry(conversationId: string): z.infer<typeof ConversationSchema> {
    let e = this.data.conversations[conversationId];
    if (!e) {
      e = { localOnly: this.data.settings.localOnlyDefault, seen: emptySeen() };
      this.data.conversations[conversationId] = e;
      const ids = Object.keys(this.data.conversations);
      if (ids.length > MAX_CONVERSATIONS) delete this.data.conversations[ids[0]!];
    }
    return e;
  }

  private day(): z.infer<typeof DaySchema> {
    const key = today();
    let d = this.data.days[key];
    if (!d) {
      d = { cloudTokens: 0, bytesUp: 0 };
      this.data.days[key] = d;
      for (const k of Object.keys(this.data.days).sort().slice(0, -DAYS_KEPT)) delete this.data.days[k];
    }
    return d;
  }
}

/** Which cap stopped the cloud, and how to raise it. */
function budgetMessage(b: Budgets, conversationTokens: number, day: { cloudTokens: number; bytesUp: number }): string {
  const raise = "raise it in Settings › Cloud budget (or remove the cap) to use the cloud again";
  if (b.conversationTokens !== null && conversationTokens >= b.conversationTokens)
    return `this conversation's cloud budget of ${b.conversationTokens} tokens is used up; ${raise}`;
  if (b.dayTokens !== null && day.cloudTokens >= b.dayTokens) return `today's cloud budget of ${b.dayTokens} tokens is used up; ${raise}`;
  if (b.dayBytesUp !== null) return `today's upload budget of ${b.dayBytesUp} bytes is used up; ${raise}`;
  return `the cloud budget is used up; ${raise}`;
}

function blank(): ControlFile {
  return { version: 1, settings: structuredClone(DEFAULT_CONTROL), conversations: {}, days: {} };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
