// The utility process's stand-in: a Node child process (forked with IPC) gets Electron's
// `process.parentPort` (on("message", e => e.data), postMessage) over Node's IPC channel. The Node
// listener is added when the host subscribes: one added during --import never receives messages.
process.parentPort = {
  on(event, listener) {
    if (event === "message") process.on("message", (data) => listener({ data }));
    return this;
  },
  postMessage(message) {
    process.send?.(message);
  },
};
