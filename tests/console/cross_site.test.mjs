// A page of another site tries, through a visitor's headless Chromium, to place an
// order and to cancel one on `oms up`: a text/plain fetch and a no-cors fetch (sent
// without a CORS preflight), a JSON fetch (which needs one), and two form posts, one
// of them text/plain shaped so that its body is JSON. None of them changes anything,
// while the console, served by oms itself, still places orders from the same browser.

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { freePort, json, launchBrowser, startServer, waitFor } from "./oms.mjs";

const ADDRESS = { name: "Ada", line1: "1 Main St", city: "Boston", postal_code: "02101", country: "US" };
const CUSTOMER = "cust-elsewhere";
const order = (id) => ({
  order_id: id, customer_id: CUSTOMER, lines: [{ sku: "SOCKS-3PK", quantity: 1 }],
  payment: { token: "tok_visa" }, ship_to: ADDRESS,
});

/// The other site's page. A text/plain form sends `name=value`: a name that opens a
/// JSON object and a value that closes it make the body JSON.
function attackPage(target, victim) {
  const form = JSON.stringify(order("elsewhere-form")).slice(0, -1) + ',"pad":"';
  const attr = (s) => s.replaceAll("&", "&amp;").replaceAll("'", "&#39;");
  return `<!doctype html><title>elsewhere</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="json-form" method="POST" enctype="text/plain" target="sink1" action="${target}/orders">
  <input name='${attr(form)}' value='"}'></form>
<form id="cancel-form" method="POST" target="sink2" action="${target}/orders/${victim}/cancel">
  <input name="why" value="because"></form>
<script>
const order = (id) => JSON.stringify(${JSON.stringify(order("ID"))}).replace('"ID"', JSON.stringify(id));
const tried = (p) => p.then(() => "sent", (e) => String(e));
const loaded = (name) => new Promise((r) => document.querySelector('iframe[name="' + name + '"]').addEventListener("load", r, { once: true }));
(async () => {
  await tried(fetch("${target}/orders", { method: "POST", headers: { "content-type": "text/plain" }, body: order("elsewhere-plain") }));
  await tried(fetch("${target}/orders", { method: "POST", mode: "no-cors", body: order("elsewhere-no-cors") }));
  await tried(fetch("${target}/orders", { method: "POST", headers: { "content-type": "application/json" }, body: order("elsewhere-json") }));
  await tried(fetch("${target}/admin/faults", { method: "DELETE" }));
  const forms = [loaded("sink1"), loaded("sink2")];
  document.getElementById("json-form").submit();
  document.getElementById("cancel-form").submit();
  await Promise.all(forms);
  document.title = "done";
})();
</script>`;
}

async function serveElsewhere(html) {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(html);
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${port}/` };
}

test("a page of another origin cannot place or cancel orders", async () => {
  const { proc, base } = await startServer();
  const browser = await launchBrowser();
  // The victim's order, placed by a client that is not a browser (it sends no Origin).
  const victim = "elsewhere-victim";
  const placed = await json(base, "POST", "/orders", { ...order(victim), customer_id: "cust-victim" });
  assert.equal(placed.status, 202, JSON.stringify(placed.body));
  const elsewhere = await serveElsewhere(attackPage(base, victim));
  try {
    const page = await browser.newPage();
    // What reached oms, as the browser saw it (the page's scripts cannot read it).
    const answered = [];
    page.on("response", (r) => {
      if (r.url().startsWith(base) && r.request().method() !== "GET") answered.push([r.request().method(), r.url(), r.status()]);
    });
    await page.goto(elsewhere.url);
    await page.waitForFunction(() => document.title === "done", null, { timeout: 20000 });

    // The requests were sent (the forms at least) and every one was refused.
    const posts = answered.filter(([m]) => m === "POST");
    assert.ok(posts.length >= 2, JSON.stringify(answered));
    for (const [method, url, status] of answered) {
      if (method === "OPTIONS") continue; // the JSON fetch's preflight, refused
      assert.equal(status, 403, `${method} ${url}`);
    }
    const { body } = await json(base, "GET", `/orders?customer_id=${CUSTOMER}`);
    assert.deepEqual(body.orders, [], "no order placed from the other site");
    const view = await waitFor(base, victim, (v) => v.status === "COMPLETED" || v.cancel_requested);
    assert.equal(view.cancel_requested, false, "the victim's order was not cancelled");

    // The console, same origin, in the same browser, still places an order.
    await page.goto(base + "/console");
    const status = await page.evaluate((o) => fetch("/orders", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(o),
    }).then((r) => r.status), { ...order("elsewhere-console"), customer_id: "cust-console-page" });
    assert.equal(status, 202);
    await waitFor(base, "elsewhere-console", (v) => v.status === "COMPLETED");
  } finally {
    await browser.close();
    elsewhere.server.close();
    proc.kill("SIGKILL");
  }
});
