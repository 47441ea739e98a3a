/** IPC channel names, shared by the preload and the main process. */
export const CALL_CHANNEL = "tandem:call";
export const EVENT_CHANNEL = "tandem:event";
