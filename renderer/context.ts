/** The stores and controller, handed to components through React context (one app per page). */
import { createContext, useContext } from "react";
import { useStore } from "zustand";
import type { StoreApi } from "zustand/vanilla";
import type { Bridge } from "../shared/bridge";
import type { Controller } from "./state/controller";
import type { Stores } from "./state/stores";

export interface AppContext {
  stores: Stores;
  controller: Controller;
  /** the bridge itself, for panels whose operations the controller does not wrap (CloudPanel) */
  bridge?: Bridge;
}

export const Ctx = createContext<AppContext | null>(null);

export function useApp(): AppContext {
  const c = useContext(Ctx);
  if (!c) throw new Error("useApp outside <Ctx.Provider>");
  return c;
}

/** Reads a slice of one store; the component re-renders only when that slice changes. */
export function useSlice<S, T>(pick: (s: Stores) => StoreApi<S>, selector: (s: S) => T): T {
  return useStore(pick(useApp().stores), selector);
}
