// The console's dashboard (/console/dashboard) in headless Chromium: reached from the
// console's header, it polls /metrics and draws orders per minute, step latency
// p50/p99 and failure rate by step with the vendored uPlot (no request leaves the
// server: the page works offline), and its tables follow the orders placed while it
// is open, a declined charge among them.

import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { json, launchBrowser, shots, startServer, waitFor } from "./oms.mjs";

const order = (id, token = "tok_visa") => ({
  order_id: id, customer_id: "cust-dash", lines: [{ sku: "MUG-WHITE", quantity: 1 }],
  payment: { token },
  ship_to: { name: "Ada", line1: "1 Main St", city: "Boston", postal_code: "02101", country: "US" },
});

test("the dashboard charts the metrics as orders complete and fail", async () => {
  const { proc, base } = await startServer();
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const elsewhere = [];
    page.on("request", (r) => { if (!r.url().startsWith(base)) elsewhere.push(r.url()); });
    await page.goto(base + "/console");
    await page.click('header a[href="/console/dashboard"]');
    await page.waitForURL(base + "/console/dashboard");
    // Poll fast, so the test sees several samples in a second or two.
    await page.goto(base + "/console/dashboard?every_ms=300");
    await page.waitForFunction(() => document.querySelectorAll(".uplot").length === 3);

    for (const id of ["dash-1", "dash-2", "dash-3"]) assert.equal((await json(base, "POST", "/orders", order(id))).status, 202);
    assert.equal((await json(base, "POST", "/orders", order("dash-4", "tok_declined"))).status, 202);
    for (const id of ["dash-1", "dash-2", "dash-3"]) await waitFor(base, id, (v) => v.status === "COMPLETED");
    await waitFor(base, "dash-4", (v) => v.status === "CANCELLED");

    // The failure table counts over the page's window: ChargePayment 5 calls, 2 errors
    // (it runs in the saga's Express child, twice for the declined order: docs/saga.md).
    await page.waitForFunction(() => {
      const row = document.querySelector('#steps tr[data-step="ChargePayment"]');
      return row && row.cells[1].textContent === "5" && row.cells[2].textContent === "2";
    }, null, { timeout: 20000 });
    assert.equal(await page.textContent('#steps tr[data-step="ChargePayment"] td:nth-child(4)'), "40.0 %");
    await page.waitForFunction(() => document.querySelector('#now tr[data-metric="orders COMPLETED"] td.n')?.textContent === "3",
      null, { timeout: 20000 });

    // The charts got data: orders per minute above zero at some sample, a p50 and a
    // p99 latency no smaller than it, and ChargePayment's failure rate above zero.
    const data = await page.evaluate(() => {
      const c = window.dashboardCharts;
      const names = c.failures.series.map((s) => s.label);
      return { perMin: c.orders.data[1], p50: c.latency.data[1], p99: c.latency.data[2],
        charge: c.failures.data[names.indexOf("ChargePayment")] };
    });
    assert.ok(data.perMin.some((v) => v > 0), `orders/min: ${data.perMin}`);
    const at = data.p99.findIndex((v) => v !== null);
    assert.ok(at >= 0 && data.p99[at] >= data.p50[at] && data.p50[at] > 0, `p50 ${data.p50} p99 ${data.p99}`);
    assert.ok(data.charge.some((v) => v > 0), `ChargePayment failure %: ${data.charge}`);
    assert.equal(await page.textContent("#message"), "");
    assert.deepEqual(elsewhere, [], "the dashboard fetched from another origin");
    await page.screenshot({ path: path.join(shots, "dashboard.png"), fullPage: true });
  } finally {
    await browser.close();
    proc.kill("SIGKILL");
  }
});
