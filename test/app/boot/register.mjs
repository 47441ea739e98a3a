// `node --import ./register.mjs dist/electron/main.js`: `import "electron"` gets fakeElectron.mjs.
import { register } from "node:module";
register("./hooks.mjs", import.meta.url);
