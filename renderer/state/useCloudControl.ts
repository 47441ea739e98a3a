/**
 * The engine's cloud controls as the UI shows them (settings, today's use, the calibration behind the
 * share estimates): fetched once, then kept current by the engine's `cloud-control` events and
 * re-read when τ changes (the estimate at τ moves with it).
 */
import { useEffect, useState } from "react";
import type { CloudControlView } from "../../shared/cloudControl";
import { useApp } from "../context";

export function useCloudControl(tau: number): CloudControlView | null {
  const { bridge } = useApp();
  const [control, setControl] = useState<CloudControlView | null>(null);
  useEffect(() => {
    if (!bridge) return;
    let live = true;
    const read = () =>
      void bridge.cloudControl({}).then(
        (c) => live && setControl(c),
        () => {},
      );
    read();
    const off = bridge.subscribe((e) => {
      if (e.type === "cloud-control") setControl(e.control);
    });
    return () => {
      live = false;
      off();
    };
  }, [bridge, tau]);
  return control;
}
