// The web console in headless Chromium (Debian's chromium, driven by playwright-core):
// an order fails at ship and its refund is refused; the console shows ShipShipment
// red, the compensations that ran, RefundPayment red and the order
// COMPENSATION_FAILED; the fault is cleared, a retry is previewed and run, and the
// order ends CANCELLED with its money back. Its buttons follow the order's `actions`
// (no cancel once the saga stopped compensating, no retry once it is finished).
// Screenshots go to target/console/.
//
// `cargo xtask test` runs this with OMS_BIN (the oms binary) and OMS_TOOLS (the folder
// where it installed playwright-core).

import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { json, launchBrowser, shots, startServer, waitFor } from "./oms.mjs";

test("a failed saga is shown, previewed, retried and finished in the console", async () => {
  const { proc, base } = await startServer();
  const browser = await launchBrowser();
  try {
    await json(base, "PUT", "/admin/faults", {
      ship: { fail_next: 1, error: "Ship.AddressRejected" },
      refund: { fail_next: 1, error: "Payment.RefundRejected" },
    });
    const order = {
      order_id: "console-1", customer_id: "cust-console",
      lines: [{ sku: "HOODIE-GRY-L", quantity: 1 }], payment: { token: "tok_visa" },
      ship_to: { name: "Ada", line1: "1 Main St", city: "Boston", postal_code: "02101", country: "US" },
    };
    assert.equal((await json(base, "POST", "/orders", order)).status, 202);
    await waitFor(base, "console-1", (v) => v.status === "COMPENSATION_FAILED");

    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    await page.goto(base + "/console");
    await page.waitForSelector('#orders tr[data-order="console-1"]');
    // Search by customer.
    await page.fill('input[name="customer_id"]', "cust-console");
    await page.click('#search button[type="submit"]');
    await page.waitForSelector('#orders tr[data-order="console-1"]');
    await page.click('#orders a[href="#/order/console-1"]');
    await page.waitForSelector("#graph");

    const cls = (state) => page.getAttribute(`g.node[data-state="${state}"]`, "data-class");
    assert.equal(await cls("ShipShipment"), "failed");
    assert.equal(await cls("FulfilShipments"), "caught");
    assert.equal(await cls("CancelShipment"), "compensating");
    assert.equal(await cls("RestockShipment"), "compensating");
    assert.equal(await cls("RefundPayment"), "failed");
    assert.equal(await cls("ReleaseInventory"), "not-reached");
    // Prepare ran the forward steps that do not wait (the Express child).
    assert.equal(await cls("Prepare"), "succeeded");
    assert.equal(await page.textContent("h2 .status"), "COMPENSATION_FAILED");
    assert.match(await page.textContent("#events"), /TaskFailed/);
    // Cancelling cannot do anything here: the button is off and says why; retry is on.
    assert.equal(await page.isDisabled("#cancel"), true);
    assert.match(await page.getAttribute("#cancel", "title"), /COMPENSATION_FAILED.*retry/s);
    assert.equal(await page.isEnabled("#retry"), true);
    // The ledger: the shipment's steps were undone, the charge was not (the refund failed).
    const ledger = await page.$$eval("#ledger tbody tr", (rows) => rows.map((r) => [...r.cells].slice(0, 3).map((c) => c.textContent)));
    assert.deepEqual(ledger, [["reserve", "", "DONE"], ["charge", "", "DONE"], ["pick", "console-1-1", "COMPENSATED"], ["ship", "console-1-1", "COMPENSATED"]]);

    // A state's input and output.
    await page.click('g.node[data-state="Prepare"]');
    await page.waitForSelector("#state-output");
    assert.match(await page.textContent("#state-output"), /shipments/);
    assert.match(await page.textContent("#state-input"), /console-1/);
    await page.screenshot({ path: path.join(shots, "1-compensation-failed.png"), fullPage: true });

    // Clear the fault, preview the retry, retry.
    await json(base, "DELETE", "/admin/faults");
    await page.click("#preview");
    await page.waitForSelector("#preview-text");
    const preview = await page.textContent("#preview-text");
    assert.match(preview, /runs again: RefundPayment/);
    assert.doesNotMatch(preview.split("Kept")[0], /ShipShipment/);
    await page.screenshot({ path: path.join(shots, "2-retry-preview.png"), fullPage: true });
    await page.click("#retry");
    await waitFor(base, "console-1", (v) => v.status === "CANCELLED");
    await page.reload();
    await page.waitForFunction(() => document.querySelector("h2 .status")?.textContent === "CANCELLED");
    assert.equal(await cls("RefundPayment"), "compensating");
    assert.equal(await cls("ReleaseInventory"), "compensating");
    assert.equal(await page.textContent("#refunded"), await page.textContent("#charged"));
    // A cancelled order offers nothing.
    for (const b of ["#cancel", "#preview", "#retry"]) assert.equal(await page.isDisabled(b), true, b);
    assert.match(await page.textContent("#events"), /ExecutionRedriven/);
    // The time line marks the redrive, and RefundPayment ran on both sides of it.
    assert.equal((await page.$$("#timeline g.redrive")).length, 1);
    assert.equal((await page.$$('#timeline g.span[data-state="RefundPayment"]')).length, 2);
    await page.screenshot({ path: path.join(shots, "3-cancelled-after-retry.png"), fullPage: true });

    // A completed order: every forward state succeeded, no compensation reached.
    await json(base, "POST", "/orders", { ...order, order_id: "console-2" });
    await waitFor(base, "console-2", (v) => v.status === "COMPLETED");
    await page.goto(base + "/console#/order/console-2");
    await page.waitForFunction(() => document.querySelector("h2 .status")?.textContent === "COMPLETED");
    assert.equal(await cls("ShipShipment"), "succeeded");
    // ShipShipment completed the order: the saga ends with the shipments' Map.
    assert.equal(await cls("FulfilShipments"), "succeeded");
    assert.equal(await cls("Prepare"), "succeeded");
    assert.equal(await cls("RefundPayment"), "not-reached");
    assert.equal(await page.isDisabled("#retry"), true);
    assert.match(await page.getAttribute("#retry", "title"), /COMPLETED/);
    await page.screenshot({ path: path.join(shots, "4-completed.png"), fullPage: true });
  } finally {
    await browser.close();
    proc.kill("SIGKILL");
  }
});
