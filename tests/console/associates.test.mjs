// The console as associates use it (issue 15): the saga graph fits its panel at 1400 px
// and zooms and pans; a declined charge shows its error in the ledger and the buttons
// offer only what the order allows; the time line shows each state's attempts; an order
// is placed through the form (catalog search, address, payment reference) with the
// API's field errors shown beside their fields; and the page follows the order event
// stream (GET /events) when the server has one, and polls as before when it answers 404.

import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { json, launchBrowser, shots, startServer, waitFor } from "./oms.mjs";

const ADDRESS = { name: "Ada", line1: "1 Main St", city: "Boston", postal_code: "02101", country: "US" };
const order = (id, token = "tok_visa", lines = [{ sku: "HOODIE-GRY-L", quantity: 1 }]) => ({
  order_id: id, customer_id: "cust-assoc", lines, payment: { token }, ship_to: ADDRESS,
});

/** The graph viewport's viewBox and scale. */
const viewport = (page) => page.$eval("#graph-viewport", (b) => ({ box: b.querySelector("svg").getAttribute("viewBox"), scale: Number(b.dataset.scale) }));

test("the graph fits and zooms, a declined charge shows its error, the time line shows retries", async () => {
  const { proc, base } = await startServer();
  const browser = await launchBrowser();
  try {
    assert.equal((await json(base, "POST", "/orders", order("assoc-declined", "tok_declined"))).status, 202);
    await waitFor(base, "assoc-declined", (v) => v.status === "CANCELLED");
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(base + "/console#/order/assoc-declined");
    await page.waitForSelector("#graph-viewport svg[viewBox]");

    // Every state is inside the panel, and nothing is wider than the window.
    const outside = await page.$eval("#graph-viewport", (b) => {
      const r = b.getBoundingClientRect();
      return [...b.querySelectorAll("g.node > rect")].map((n) => [n.parentNode.dataset.state, n.getBoundingClientRect()])
        .filter(([, n]) => n.left < r.left - 1 || n.right > r.right + 1 || n.top < r.top - 1 || n.bottom > r.bottom + 1).map(([s]) => s);
    });
    assert.deepEqual(outside, []);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 1400));
    const fitted = await viewport(page);
    await page.click("#zoom-in");
    assert.ok((await viewport(page)).scale > fitted.scale, "zoom in");
    const r = await page.$eval("#graph-viewport", (b) => { const x = b.getBoundingClientRect(); return { x: x.x, y: x.y, w: x.width, h: x.height }; });
    await page.mouse.move(r.x + r.w / 2, r.y + r.h / 2);
    const before = (await viewport(page)).scale;
    await page.mouse.wheel(0, 300);
    await page.waitForFunction((s) => Number(document.querySelector("#graph-viewport").dataset.scale) < s, before);
    const wheeled = await viewport(page);
    await page.mouse.down();
    await page.mouse.move(r.x + r.w / 2 + 80, r.y + r.h / 2 + 40, { steps: 4 });
    await page.mouse.up();
    const dragged = await viewport(page);
    assert.notEqual(dragged.box, wheeled.box, "drag pans");
    assert.equal(dragged.scale, wheeled.scale, "a drag does not zoom");
    assert.match(page.url(), /#\/order\/assoc-declined$/, "a drag is not a click on a state");
    await page.click("#zoom-fit");
    assert.deepEqual(await viewport(page), fitted);

    // The declined charge: its error in the ledger, and no button of a finished order.
    const charge = await page.textContent('#ledger tr[data-step="charge"]');
    assert.match(charge, /COMPENSATED/);
    assert.match(charge, /Payment\.Declined/);
    assert.match(charge, /card declined/);
    for (const b of ["#cancel", "#preview", "#retry"]) assert.equal(await page.isDisabled(b), true, b);
    assert.match(await page.getAttribute("#cancel", "title"), /CANCELLED/);
    // The time line: Prepare (the saga's Express child, where ChargePayment runs) failed,
    // then PrepareReporting ran it again to learn the business error, then the
    // compensations.
    const span = (s) => page.$eval(`#timeline g.span[data-state="${s}"]`, (g) => ({ ...g.dataset, cls: g.getAttribute("class") }));
    const prepared = await span("Prepare"), reported = await span("PrepareReporting");
    assert.ok(Number(reported.start) >= Number(prepared.end), "in time order");
    assert.equal(prepared.failedAttempts, "1");
    await page.screenshot({ path: path.join(shots, "5-declined-ledger-and-time-line.png"), fullPage: true });

    // A transient error: the time line shows ShipShipment's failed attempt and its retry.
    await json(base, "PUT", "/admin/faults", { ship: { fail_next: 1, error: "Activity.Unavailable" } });
    await json(base, "POST", "/orders", order("assoc-retried"));
    await waitFor(base, "assoc-retried", (v) => v.status === "COMPLETED");
    await page.goto(base + "/console#/order/assoc-retried");
    await page.waitForFunction(() => document.querySelector("h2 .status")?.textContent === "COMPLETED");
    const shipped = await span("ShipShipment");
    assert.deepEqual([shipped.attempts, shipped.failedAttempts], ["2", "1"]);
    assert.match(shipped.cls, /succeeded/);
    assert.match(await page.textContent('#timeline g.span[data-state="ShipShipment"] title'), /Activity\.Unavailable/);
    await page.click('#timeline g.span[data-state="ShipShipment"]');
    await page.waitForSelector("#state-output");
  } finally {
    await browser.close();
    proc.kill("SIGKILL");
  }
});

test("an associate places an order through the form", async () => {
  const { proc, base } = await startServer();
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(base + "/console");
    await page.click("#new-order-link");
    await page.waitForSelector("#catalog tr[data-sku]");
    await page.fill("#catalog-search", "mug");
    assert.deepEqual(await page.$$eval("#catalog tr[data-sku]", (t) => t.map((r) => r.dataset.sku)), ["MUG-WHITE"]);
    await page.click('#catalog tr[data-sku="MUG-WHITE"] .add');
    await page.click('#catalog tr[data-sku="MUG-WHITE"] .add');
    await page.fill("#catalog-search", "socks");
    await page.click('#catalog tr[data-sku="SOCKS-3PK"] .add');
    await page.click('#lines tr[data-sku="SOCKS-3PK"] .remove');
    await page.fill('input[name="customer_id"]', "cust-form");
    await page.fill('input[name="payment.token"]', "visa");
    await page.fill('input[name="ship_to.name"]', "Ada Lovelace");
    await page.fill('input[name="ship_to.line1"]', "1 Main St");
    await page.fill('input[name="ship_to.city"]', "Dublin");
    await page.fill('input[name="ship_to.postal_code"]', "D02");
    await page.selectOption('select[name="ship_to.country"]', "IE");
    // A bad payment reference: the API's rule, beside the field.
    await page.click("#place");
    await page.waitForSelector('#form-errors li[data-field="payment.token"]');
    assert.equal(await page.getAttribute('input[name="payment.token"]', "aria-invalid"), "true");
    await page.screenshot({ path: path.join(shots, "6-new-order-field-error.png"), fullPage: true });
    await page.fill('input[name="payment.token"]', "tok_visa");
    await page.click("#place");
    await page.waitForFunction(() => /^#\/order\/ord-/.test(location.hash));
    const id = decodeURIComponent(await page.evaluate(() => location.hash.slice("#/order/".length)));
    const placed = await waitFor(base, id, (v) => v.status === "COMPLETED");
    assert.deepEqual(placed.lines.map((l) => [l.sku, l.quantity]), [["MUG-WHITE", 2]]);
    assert.equal(placed.customer_id, "cust-form");
    assert.equal(placed.ship_to.country, "IE");
  } finally {
    await browser.close();
    proc.kill("SIGKILL");
  }
});

test("the console follows the order event stream, and polls when there is none", async () => {
  const { proc, base } = await startServer();
  const browser = await launchBrowser();
  try {
    // The server's own stream: a running order's page is live (it does not poll) and
    // follows the order to COMPLETED.
    await json(base, "PUT", "/admin/faults", { pick: { latency_ms: 1500 } });
    await json(base, "POST", "/orders", order("assoc-streamed"));
    const streamed = await browser.newPage();
    await streamed.goto(base + "/console#/order/assoc-streamed");
    await streamed.waitForFunction(() => document.body.dataset.live === "on");
    await streamed.waitForFunction(() => document.querySelector("h2 .status")?.textContent === "COMPLETED", null, { timeout: 15000 });

    // A server without GET /events (404 here): the console says nothing of it and
    // follows a running order by polling, as before.
    await json(base, "POST", "/orders", order("assoc-polled"));
    const polled = await browser.newPage();
    await polled.route("**/events?*", (route) => route.fulfill({ status: 404, headers: { "content-type": "application/json" }, body: JSON.stringify({ code: "Route.NotFound", message: "no such route" }) }));
    await polled.goto(base + "/console#/order/assoc-polled");
    await polled.waitForFunction(() => document.body.dataset.live === "absent");
    await polled.waitForFunction(() => document.querySelector("h2 .status")?.textContent === "COMPLETED", null, { timeout: 15000 });
    assert.equal(await polled.textContent("#message"), "");
    await json(base, "DELETE", "/admin/faults");

    // A stream served by the test, to hold an event back: the list, which does
    // not poll, shows an order placed after it was drawn once the order's event comes,
    // and the console resumes after the last event it saw.
    const page = await browser.newPage();
    const asked = [];
    let release;
    const held = new Promise((r) => { release = r; });
    await page.route("**/events?*", async (route) => {
      asked.push(new URL(route.request().url()).searchParams.get("after"));
      if (asked.length > 1) return route.fulfill({ status: 200, headers: { "content-type": "text/event-stream" }, body: ": keep-alive\n\n" });
      await held;
      const ce = { specversion: "1.0", id: "e-7", source: "oms", type: "oms.order.completed", time: new Date().toISOString(), subject: "assoc-live", datacontenttype: "application/json", data: { order_id: "assoc-live", sequence: 5, status: "COMPLETED" } };
      await route.fulfill({ status: 200, headers: { "content-type": "text/event-stream" }, body: `: keep-alive\n\nid: 7\nevent: oms.order.completed\ndata: ${JSON.stringify(ce)}\n\n` });
    });
    await page.goto(base + "/console");
    await page.waitForSelector("#orders tr[data-order]");
    await json(base, "POST", "/orders", order("assoc-live"));
    await waitFor(base, "assoc-live", (v) => v.status === "COMPLETED");
    assert.equal(await page.$('#orders tr[data-order="assoc-live"]'), null, "the list does not poll");
    release();
    await page.waitForSelector('#orders tr[data-order="assoc-live"]');
    await page.waitForFunction(() => document.body.dataset.live !== undefined);
    for (let i = 0; i < 100 && asked.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    // A tab's first read starts at the log's end; a reconnect resumes at the last id.
    assert.deepEqual(asked.slice(0, 2), ["latest", "7"]);
  } finally {
    await browser.close();
    proc.kill("SIGKILL");
  }
});
