/**
 * The application menu: Electron's default one has Toggle Developer Tools (and its shortcut) even in a
 * packaged app; this one has them in development only. Plain data (Electron's MenuItemConstructorOptions).
 */
export interface MenuItem {
  role?: string;
  label?: string;
  type?: "separator";
  submenu?: MenuItem[];
}

export function appMenuTemplate(opts: { devTools: boolean; appName: string; mac?: boolean }): MenuItem[] {
  const mac = opts.mac ?? process.platform === "darwin";
  const sep: MenuItem = { type: "separator" };
  const view: MenuItem[] = [
    ...(opts.devTools ? [{ role: "reload" }, { role: "forceReload" }, { role: "toggleDevTools" }, sep] : []),
    { role: "resetZoom" },
    { role: "zoomIn" },
    { role: "zoomOut" },
    sep,
    { role: "togglefullscreen" },
  ];
  return [
    ...(mac
      ? [
          {
            label: opts.appName,
            submenu: [{ role: "about" }, sep, { role: "hide" }, { role: "hideOthers" }, { role: "unhide" }, sep, { role: "quit" }],
          },
        ]
      : []),
    { label: "File", submenu: [{ role: mac ? "close" : "quit" }] },
    {
      label: "Edit",
      submenu: [{ role: "undo" }, { role: "redo" }, sep, { role: "cut" }, { role: "copy" }, { role: "paste" }, { role: "selectAll" }],
    },
    { label: "View", submenu: view },
    { label: "Window", submenu: [{ role: "minimize" }, { role: "zoom" }, ...(mac ? [sep, { role: "front" }] : [{ role: "close" }])] },
  ];
}
