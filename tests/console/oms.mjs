// What the browser tests share: an `oms up` on a free loopback port with a fresh data
// dir, and headless Chromium (Debian's, driven by playwright-core).
//
// `cargo xtask test` runs the tests with OMS_BIN (the oms binary) and OMS_TOOLS (the
// folder where it installed playwright-core).

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import path from "node:path";

const tools = process.env.OMS_TOOLS;
const bin = process.env.OMS_BIN && path.resolve(process.env.OMS_BIN);
if (!tools || !bin) throw new Error("run with OMS_BIN and OMS_TOOLS set (cargo xtask test sets them)");
const { chromium } = createRequire(path.resolve(tools, "package.json"))("playwright-core");

export const shots = path.resolve(process.env.OMS_SCREENSHOTS || "target/console");
mkdirSync(shots, { recursive: true });

export const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
});

export async function startServer(extraArgs = []) {
  const port = await freePort();
  const data = mkdtempSync(path.join(tmpdir(), "oms-console-"));
  const proc = spawn(bin, ["up", "--listen", `127.0.0.1:${port}`, "--data-dir", data, "--pick-delay-ms", "20", "--fault-injection", ...extraArgs],
    { cwd: data, stdio: ["ignore", "pipe", "inherit"] });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(base + "/health")).ok) return { proc, base, data }; } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  throw new Error("oms up did not start");
}

export const launchBrowser = () => chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});

/// A call of the Orders API as a client that is not a browser makes it (no Origin).
export const json = async (base, method, p, body) => {
  const r = await fetch(base + p, { method, headers: { "content-type": "application/json" }, body: body && JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
};

export async function waitFor(base, id, pred) {
  for (let i = 0; i < 300; i++) {
    const { body } = await json(base, "GET", `/orders/${id}`);
    if (pred(body)) return body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`order ${id} never got there`);
}
