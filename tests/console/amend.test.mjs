// Amending an order in the web console: an order waits for picking (the server's
// warehouse picks only when told); the associate opens the Amend form, changes the
// city and a quantity and adds a line, and sees the amendment APPLIED in the order's
// history; a form sent after the order changed shows the 409 (stale version), and one
// sent after a shipment was picked shows why the order can no longer be amended, after
// which the page offers no Amend button. Screenshots go to target/console/.
//
// Run with OMS_BIN (the oms binary) and OMS_TOOLS (the folder where `cargo xtask test`
// installed playwright-core).

import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { json, launchBrowser, shots, startServer, waitFor } from "./oms.mjs";

const ID = "console-amend-1";
const waiting = (v) => v.status === "FULFILLING" && v.shipments.length === 2
  && v.shipments.every((s) => s.status === "RESERVED") && !v.amendments.some((a) => a.status === "RUNNING");

async function pick(base, shipmentId) {
  for (let i = 0; i < 100; i++) {
    // 409 until the saga's pick request has reached the warehouse.
    if ((await json(base, "POST", `/shipments/${shipmentId}/picked`, {})).status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${shipmentId} was never picked`);
}

test("an order is amended in the console, and refusals are shown", async () => {
  const { proc, base } = await startServer(["--manual-picking"]);
  const browser = await launchBrowser();
  try {
    // No warehouse stocks both: two shipments, so one can be picked while the other waits.
    const order = {
      order_id: ID, customer_id: "cust-console",
      lines: [{ sku: "HOODIE-GRY-L", quantity: 1 }, { sku: "CAP-NAVY", quantity: 1 }], payment: { token: "tok_visa" },
      ship_to: { name: "Ada", line1: "1 Main St", city: "Boston", postal_code: "02101", country: "US" },
    };
    assert.equal((await json(base, "POST", "/orders", order)).status, 202);
    const before = await waitFor(base, ID, waiting);

    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    await page.goto(`${base}/console#/order/${ID}`);
    await page.click("#amend-open");
    await page.fill('#amend-edit input[name="by"]', "assoc-console");
    await page.fill('#amend-edit input[name="city"]', "Cambridge");
    await page.fill('#amend-lines tr:nth-child(2) input[name="quantity"]', "2");
    await page.click("#amend-add");
    await page.fill('#amend-lines tr:nth-child(3) input[name="sku"]', "SOCKS-3PK");
    await page.screenshot({ path: path.join(shots, "amend-1-form.png"), fullPage: true });
    await page.click('#amend-edit button[type="submit"]');
    await page.waitForSelector('#amendments tr[data-amendment="amd-1"] [data-status="APPLIED"]', { timeout: 20000 });
    const row = await page.textContent('#amendments tr[data-amendment="amd-1"]');
    assert.match(row, /assoc-console/);
    assert.match(row, /CAP-NAVY 1 → 2/);
    assert.match(row, /SOCKS-3PK 0 → 1/);
    const amended = await waitFor(base, ID, waiting);
    assert.equal(amended.ship_to.city, "Cambridge");
    assert.deepEqual(amended.lines.map((l) => [l.sku, l.quantity]), [["HOODIE-GRY-L", 1], ["CAP-NAVY", 2], ["SOCKS-3PK", 1]]);
    assert.equal(amended.charged_cents - amended.refunded_cents, amended.total_cents);
    assert.ok(amended.version > before.version);
    await page.screenshot({ path: path.join(shots, "amend-2-applied.png"), fullPage: true });

    // The order changes while the form is open: the form's version is stale.
    await page.click("#amend-open");
    await page.fill('#amend-edit input[name="line1"]', "2 Elm St");
    const { status } = await json(base, "PATCH", `/orders/${ID}`, { version: amended.version, ship_to: { ...amended.ship_to, name: "Ada L." } });
    assert.equal(status, 202);
    await page.click('#amend-edit button[type="submit"]');
    await page.waitForFunction(() => document.querySelector("#amend-error")?.textContent.includes("Order.VersionStale"));

    // A shipment is picked while the form is open: refused, with the reason.
    const current = await waitFor(base, ID, waiting);
    await page.click("#amend-cancel");
    await page.waitForSelector('#amendments tr[data-amendment="amd-2"] [data-status="APPLIED"]', { timeout: 20000 });
    await page.click("#amend-open");
    await page.fill('#amend-edit input[name="line1"]', "3 Oak St");
    await pick(base, current.shipments[0].shipment_id);
    await page.click('#amend-edit button[type="submit"]');
    await page.waitForFunction(() => /Order\.NotAmendable: .*shipment \S+ is (PICKED|SHIPPED)/.test(document.querySelector("#amend-error")?.textContent));
    await page.screenshot({ path: path.join(shots, "amend-3-refused.png"), fullPage: true });
    // Closed, the page is drawn again from the order as it is: no Amend button.
    await page.click("#amend-cancel");
    await page.waitForFunction(() => !document.querySelector("#amend-edit") && document.querySelector("#amendments"));
    assert.equal(await page.$("#amend-open"), null, "no Amend button once a shipment is picked");

    // The rest is picked: the order completes as amended, its books balanced.
    await pick(base, current.shipments[1].shipment_id);
    const done = await waitFor(base, ID, (v) => v.status === "COMPLETED");
    assert.equal(done.charged_cents - done.refunded_cents, done.total_cents);
    assert.equal(done.ship_to.name, "Ada L.");
  } finally {
    await browser.close();
    proc.kill("SIGKILL");
  }
});
