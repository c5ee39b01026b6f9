// The console on a server that requires credentials (as every server off loopback
// does): given the bearer token once, as /console#token=TOKEN, it lists orders and
// draws their sagas (its Step Functions calls carry the token too); without it, it
// asks, and shows nothing when refused.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { launchBrowser, startServer } from "./oms.mjs";

const order = {
  order_id: "guarded-1", customer_id: "cust-guarded",
  lines: [{ sku: "SOCKS-3PK", quantity: 1 }], payment: { token: "tok_visa" },
  ship_to: { name: "Ada", line1: "1 Main St", city: "Boston", postal_code: "02101", country: "US" },
};

test("the console works with the token and shows nothing without it", async () => {
  const { proc, base, data } = await startServer(["--require-auth"]);
  const browser = await launchBrowser();
  try {
    const { token } = JSON.parse(readFileSync(path.join(data, "credentials.json"), "utf8"));
    const placed = await fetch(base + "/orders", {
      method: "POST", body: JSON.stringify(order),
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    });
    assert.equal(placed.status, 202);

    const refused = await browser.newPage();
    let asked = 0;
    refused.on("dialog", (d) => { asked++; d.dismiss(); });
    await refused.goto(base + "/console");
    await refused.waitForFunction(() => /Auth\.Required/.test(document.querySelector("#message")?.textContent || ""));
    assert.ok(asked >= 1, "the console asked for the token");
    assert.equal(await refused.$('#orders tr[data-order="guarded-1"]'), null);

    const page = await browser.newPage();
    await page.goto(base + "/console#token=" + encodeURIComponent(token));
    await page.waitForSelector('#orders tr[data-order="guarded-1"]');
    assert.doesNotMatch(page.url(), /token/, "the token does not stay in the address bar");
    await page.click('#orders a[href="#/order/guarded-1"]');
    await page.waitForSelector('g.node[data-state="Prepare"]');
    assert.match(await page.textContent("#events"), /ExecutionStarted/);
  } finally {
    await browser.close();
    proc.kill("SIGKILL");
  }
});
